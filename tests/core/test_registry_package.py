"""The pack as the Comfy Registry sees it, checked with comfy-cli itself (a test tool; `.ci/run`
installs it into .venv): `comfy node validate` (config + ruff S102/S307/E702) and `comfy node pack`
(the archive users download: git-tracked files less .comfyignore). Skips loudly without comfy-cli.
The archive installed into a real server: tests/host/test_registry_archive.py."""
import importlib.util
import pathlib
import re
import struct
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ledits_registry_archive",
                                               REPO / "tests" / "host" / "ledits_registry_archive.py")
registry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(registry)

SHIPPED_TREES = ("nodes/", "ledits_core/", "web/", "workflows/")      # every tracked file under these
SHIPPED_FILES = ["__init__.py", "pyproject.toml", "requirements.txt", "README.md", "CHANGELOG.md", "LICENSE",
                 "assets/icon.png", "tools/ledits_edit.py", "tools/comfy_headless.py", "tools/tiny_models.py",
                 "tools/tiny_dit_models.py"] + [f"web/docs/{node}.md" for node in registry.PACK_NODES]
NOT_SHIPPED = ("tests/", "bench/", "docs/", ".ci/", ".github/", ".gitignore", ".comfyignore",
               "tools/build/", "tools/tiny_families/")
SIZE_BUDGET = 1 << 20          # the archive is the download of every Registry install


@pytest.fixture(scope="module")
def registry_run(tmp_path_factory):
    return registry.validate_and_pack(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def archive(registry_run):
    rc, out, err = registry_run["pack"]
    assert rc == 0 and registry_run["zip"], f"comfy node pack failed ({rc}):\n{out}\n{err}"
    with zipfile.ZipFile(registry_run["zip"]) as zf:
        return {"path": registry_run["zip"], "names": sorted(zf.namelist()),
                "size": registry_run["zip"].stat().st_size,
                "unpacked": sum(info.file_size for info in zf.infolist())}


def test_comfy_node_validate_passes_with_its_security_rules(registry_run):
    rc, out, err = registry_run["validate"]
    assert rc == 0, f"comfy node validate exited {rc}:\n{out}\n{err}"
    assert "All validation checks passed successfully" in out, out + err
    assert "Security warnings found" not in out, out      # validate only warns (--exit-zero): fail on it here


def test_comfy_cli_never_reached_the_network(registry_run):
    """The audit hook reports every socket connect / name lookup in comfy-cli's process."""
    for step in ("validate", "pack"):
        assert registry.NETWORK_ATTEMPT not in registry_run[step][2], registry_run[step][2]


def test_the_archive_holds_what_users_need_and_nothing_else(archive):
    names = archive["names"]
    print(f"\n[registry] comfy node pack: {len(names)} files, {archive['size'] / 1024:.0f} KiB zipped "
          f"({archive['unpacked'] / 1024:.0f} KiB unpacked)")
    tracked = registry.tracked_files()
    required = set(SHIPPED_FILES) | {n for n in tracked if n.startswith(SHIPPED_TREES)}
    assert not sorted(required - set(names)), f"missing from the archive: {sorted(required - set(names))}"
    leaked = [n for n in names if n.startswith(NOT_SHIPPED) or "__pycache__" in n or n.endswith(".safetensors")]
    assert not leaked, f"development files in the archive: {leaked}"
    assert not [n for n in names if "fixture_node" in n], "the test-only fixture node must not ship"
    assert set(names) <= set(tracked) | {".comfyignore"}, "only git-tracked files are packed"
    assert archive["size"] < SIZE_BUDGET, f"archive is {archive['size']} bytes (budget {SIZE_BUDGET})"


def test_shipped_tools_have_their_siblings(archive):
    """tools/ledits_edit.py loads sibling files by name (tool_module / _sibling): each must ship."""
    names = set(archive["names"])
    with zipfile.ZipFile(archive["path"]) as zf:
        for name in sorted(n for n in names if n.startswith("tools/") and n.endswith(".py")):
            text = zf.read(name).decode()
            for sibling in re.findall(r"(?:tool_module|_sibling)\(\s*[\"']([\w]+)[\"']", text):
                assert f"tools/{sibling}.py" in names, f"{name} loads tools/{sibling}.py, which is not shipped"


def test_icon_fits_the_registry_limits():
    """[tool.comfy] Icon: PNG at most 800 x 400 px (Registry specification)."""
    data = (REPO / "assets" / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width <= 800 and height <= 400, (width, height)


def test_publish_workflow_publishes_on_a_version_change_with_the_documented_action():
    text = (REPO / ".github" / "workflows" / "publish.yml").read_text()
    assert "Comfy-Org/publish-node-action@" in text and "secrets.REGISTRY_ACCESS_TOKEN" in text
    assert re.search(r"branches:\s*\[?\s*main", text) and "pyproject.toml" in text
    assert "<owner>/<repository>" in text, "the workflow must refuse to publish placeholder URLs"


def test_changelog_has_the_current_version():
    import tomllib
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^## {re.escape(version)}\b", (REPO / "CHANGELOG.md").read_text(), re.M), version


def test_workflows_name_this_pack_for_install_missing_nodes():
    """Each LEDITS++ node in a template carries cnr_id = the Registry id (the front end and the
    Manager find the pack of a missing node by it) and ver = the version (tools/build/build_workflows.py)."""
    import json
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for path in sorted((REPO / "workflows").glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"].startswith("LEditsPP"):
                props = node["properties"]
                assert (props.get("cnr_id"), props.get("ver")) == (project["name"], project["version"]), \
                    f"{path.name} node {node['id']}: {props} (regenerate: python tools/build/build_workflows.py)"
