"""The Registry archive installed the way the Manager (and `comfy node install`) installs it: `comfy
node pack`'s node.zip unzipped into custom_nodes/ledits-pp of a fresh custom_nodes folder (the
server's only one: --base-directory), next to the test-only fixture node. Since the Manager
installs from the Registry by default, this archive, not the repository, is what most users run.
One extra server start and one small edit; the archive is built once per host session."""
import sys
import urllib.parse

import pytest

from ledits_registry_archive import PACK_NODES, build_archive, install_like_manager
from ledits_server_harness import ok, prompt_for, read_latent, write_image

FOLDER = "ledits-pp"          # custom_nodes/<[project].name>, as the Manager and comfy-cli name it
start_server = sys.modules["ledits_host_server_fixtures"].start_server     # loaded by conftest


@pytest.fixture(scope="session")
def archive_server(comfy_host, tiny_ckpt, session_dir):
    """A server whose only pack copy is the unzipped archive (plus the fixture node)."""
    zip_path = build_archive(session_dir / "registry")
    base = session_dir / "archive_server"
    pack = install_like_manager(zip_path, base / "custom_nodes", FOLDER)
    server = start_server(comfy_host["root"], base, session_dir / "checkpoints", installed_pack=FOLDER)
    try:
        print(f"\narchive server {server.url} ready in {server.ready_s:.1f} s; pack from {zip_path} "
              f"({zip_path.stat().st_size / 1024:.0f} KiB) in {pack}")
        server.pack_dir = pack
        yield server
    finally:
        server.stop()


def test_archive_has_no_test_code(archive_server):
    shipped = {p.relative_to(archive_server.pack_dir).parts[0] for p in archive_server.pack_dir.rglob("*")}
    assert {"nodes", "ledits_core", "web", "workflows", "tools"} <= shipped, shipped
    assert not shipped & {"tests", "bench", "docs"}, shipped


def test_every_node_registers_from_the_archive_without_import_errors(archive_server):
    failures = archive_server.import_failures(FOLDER, "ledits")
    assert not failures, "\n".join(failures) + "\n--- log tail ---\n" + archive_server.log_tail()
    for node_id in PACK_NODES:
        info = archive_server.object_info(node_id)
        assert info is not None, f"{node_id} not registered\n{archive_server.log_tail()}"
        assert info["python_module"] == f"custom_nodes.{FOLDER}", (node_id, info["python_module"])


def test_templates_and_help_pages_are_served(archive_server):
    workflows = sorted(p.stem for p in (archive_server.pack_dir / "workflows").glob("*.json"))
    listed = archive_server.get_json("/workflow_templates")
    assert sorted(listed.get(FOLDER, [])) == workflows, listed
    status, body = archive_server.http("GET", f"/api/workflow_templates/{FOLDER}/{workflows[0]}.json")
    assert status == 200 and body, status
    scripts = [s for s in archive_server.get_json("/extensions") if s.startswith(f"/extensions/{FOLDER}/")]
    assert scripts == [f"/extensions/{FOLDER}/js/ledits_pp.js"], scripts
    for node_id in PACK_NODES:
        status, body = archive_server.http("GET", f"/extensions/{urllib.parse.quote(FOLDER)}/docs/{node_id}.md")
        page = (archive_server.pack_dir / "web" / "docs" / f"{node_id}.md").read_bytes()
        assert status == 200 and body == page, f"help page of {node_id}: {status}"


def test_a_tiny_edit_runs_over_http(archive_server, tiny_ckpt):
    image = write_image(archive_server, "archive_input.png", 64, 48, seed=0)
    entry = archive_server.run(prompt_for(tiny_ckpt["sd15"], image, steps=3, prefix="archive_edit"))
    assert ok(entry), entry["status"]
    edited, source = read_latent(archive_server, entry, "11"), read_latent(archive_server, entry, "12")
    assert edited.shape == source.shape and bool(edited.isfinite().all())
    assert (edited - source).abs().max() > 0, "the concept changed nothing"
