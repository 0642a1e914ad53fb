"""Batch edits of tools/ledits_edit.py (issue #11 part 4) on two real servers of this host.

The two servers (tiny SD1.5 checkpoint through their extra_model_paths, as server_fixtures starts
them) live for the module; a test that stops one gets a fresh one next time. The tool runs as a
subprocess, as users run it: images over 2 servers equal the in-process run for the same seeds,
a server terminated mid-batch leaves its images to the other, --resume redoes only what is
missing, a corrupt image is recorded and skipped, SIGINT interrupts our prompts on the servers and
keeps the finished outputs. Tiny images (64 px) and few steps; no timed assertions.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from test_ledits_edit_cli import TIMEOUT_S, TOOL, run_tool

SERVERS = sys.modules["ledits_host_server_fixtures"]     # tests/host/server_fixtures.py, loaded by conftest
CKPT = "tiny_sd15.safetensors"
SIZES = [(64, 64), (96, 64), (64, 96)]
THREADS = {"OMP_NUM_THREADS": "1"}    # two servers on 2 shared cores; torch's result depends on it, so
#                                       the in-process reference runs on one thread too


@pytest.fixture(scope="module")
def server_pool(comfy_host, tiny_ckpt, session_dir):
    """[server A, server B] and a start(i) that replaces one; every server started is stopped at the end."""
    started = []

    def start(i):
        base = session_dir / f"batch_server_{i}_{len(started)}_{os.getpid()}"
        server = SERVERS.start_server(comfy_host["root"], base, session_dir / "checkpoints", env=THREADS)
        started.append(server)
        SERVERS.check_registration(server)
        return server
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:     # the two start-ups overlap
            servers = list(pool.map(start, range(2)))
        yield servers, start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def servers(server_pool):
    """The module's two running servers (one stopped by an earlier test is started afresh)."""
    pool, start = server_pool
    for i, server in enumerate(pool):
        if server.proc.poll() is not None:
            pool[i] = start(i)
    return list(pool)


def write_images(folder, count, seed=0):
    """`count` small random RGB pictures p0.png, p1.png, ... (sizes cycle through SIZES)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def server_args(servers):
    return [arg for server in servers for arg in ("--server", server.url)] + ["--ckpt", CKPT]


def results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def pixels(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def assert_complete(out, lines):
    """Every done line has its folder with every file, readable; nothing else looks finished."""
    done = [line for line in lines if line["status"] == "done"]
    for line in done:
        folder = out / line["output"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(line["files"]), line
        for name in line["files"]:
            assert pixels(folder / name).shape[:2] == tuple(reversed(line["size"]))
    visible = {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert visible == {line["output"] for line in done}, "a folder without a results line looks finished"
    assert not [p for p in out.iterdir() if ".partial-" in p.name], "temp folders left behind"


def start_tool(args, out):
    """The tool as a background process, for tests that act while it runs; its stderr goes to a file."""
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "LEDITS_HOST_RUN")}
    log = out.parent / f"{out.name}.stderr"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(TOOL), *map(str, args), "--out", str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL)
    return proc, log


def wait_until(condition, proc, what, timeout=TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the batch ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


def test_six_images_on_two_servers_equal_the_in_process_run(servers, comfy_host, session_dir, tmp_path, monkeypatch):
    for name, value in THREADS.items():
        monkeypatch.setenv(name, value)
    images = write_images(tmp_path / "in", 6, seed=1)
    concepts = {f"p{i}.png": {"add": ["glasses"] + (["a red hat"] if i % 2 else []),
                              "remove": ["cat"] if i % 3 else [], "seed": 100 + i} for i in range(6)}
    concepts["p3.png"].update(add=[], remove=["cat", "dog"])             # removals only
    (tmp_path / "concepts.json").write_text(json.dumps(concepts))
    common = ["--image", images, "--concepts-file", tmp_path / "concepts.json", "--steps", 3]
    local = run_tool(common + ["--ckpt", session_dir / "checkpoints" / CKPT, "--tiny-classes",
                               "--out", tmp_path / "local"], tmp_path, comfy_host["root"])
    assert local.returncode == 0, local.stderr[-3000:]
    remote = run_tool(common + server_args(servers) + ["--out", tmp_path / "remote"], tmp_path)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "img/min" in remote.stderr and "6 done, 0 failed" in remote.stderr
    by_name = {line["output"]: line for line in results(tmp_path / "remote")}
    assert sorted(by_name) == [f"p{i}" for i in range(6)]
    assert {line["server"] for line in by_name.values()} == {s.url for s in servers}, "not spread over both"
    for line in results(tmp_path / "local"):
        other = by_name[line["output"]]
        assert line["server"] == "in-process" and line["error"] is None and other["error"] is None
        assert line["seed"] == other["seed"] == concepts[line["output"] + ".png"]["seed"]
        assert line["concepts"] == other["concepts"] and line["files"] == other["files"]
        assert len(line["files"]) == 1 + len(line["concepts"]["add"]) + len(line["concepts"]["remove"])
        for name in line["files"]:
            local_px = pixels(tmp_path / "local" / line["output"] / name)
            remote_px = pixels(tmp_path / "remote" / line["output"] / name)
            assert np.array_equal(local_px, remote_px), f"{line['output']}/{name} differs from the in-process result"
    assert_complete(tmp_path / "remote", results(tmp_path / "remote"))


def test_a_server_stopped_mid_batch_leaves_its_images_to_the_other(servers, tmp_path):
    survivor, victim = servers
    images = write_images(tmp_path / "in", 6, seed=2)
    proc, log = start_tool(["--image", images, "--add", "glasses", "--steps", 4] + server_args(servers),
                           tmp_path / "out")
    try:
        # one of ours running and one waiting on the victim: at least one is unfinished when it stops
        wait_until(lambda: victim.get_json("/prompt")["exec_info"]["queue_remaining"] >= 2, proc,
                   "two prompts queued on the victim")
        victim.stop()
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = log.read_text()
    moved = re.search(rf"server {re.escape(victim.url)} went away \(.*\); (\d+) unfinished image\(s\) go to "
                      r"the 1 other server\(s\)", stderr)
    assert moved and int(moved.group(1)) >= 1, stderr
    lines = results(tmp_path / "out")
    assert sorted(line["output"] for line in lines) == [f"p{i}" for i in range(6)]
    assert all(line["status"] == "done" for line in lines), lines
    assert sum(line["server"] == survivor.url for line in lines) >= int(moved.group(1))
    assert_complete(tmp_path / "out", lines)


def test_the_only_server_stopped_fails_the_rest_clearly(servers, tmp_path):
    server = servers[1]
    images = write_images(tmp_path / "in", 4, seed=7)
    proc, log = start_tool(["--image", images, "--add", "glasses", "--steps", 4, "--server", server.url,
                            "--ckpt", CKPT], tmp_path / "out")
    try:
        wait_until(lambda: server.get_json("/prompt")["exec_info"]["queue_remaining"] >= 2, proc,
                   "two prompts queued")
        server.stop()
        assert proc.wait(timeout=TIMEOUT_S) == 1                        # 1: some images failed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "have no server left" in log.read_text()
    lines = results(tmp_path / "out")
    assert sorted(line["output"] for line in lines) == [f"p{i}" for i in range(4)]
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) >= 2 and all("no server left" in line["error"] for line in failed), failed
    assert_complete(tmp_path / "out", lines)


def test_resume_redoes_only_what_is_missing(servers, tmp_path):
    images = write_images(tmp_path / "in", 4, seed=3)
    (tmp_path / "concepts.csv").write_text("image,add,remove,seed\np0.png,glasses;a red hat,cat,7\n"
                                           "p2.png,,dog,\n")      # p1, p3: --add snow
    args = ["--image", images, "--concepts-file", tmp_path / "concepts.csv", "--add", "snow", "--steps", 3,
            "--out", tmp_path / "out"] + server_args(servers)
    first = run_tool(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out"
    lines = {line["output"]: line for line in results(out)}
    assert lines["p0"]["concepts"] == {"add": ["glasses", "a red hat"], "remove": ["cat"]} and lines["p0"]["seed"] == 7
    assert lines["p2"]["concepts"] == {"add": [], "remove": ["dog"]} and lines["p2"]["seed"] == 0
    assert lines["p1"]["concepts"] == {"add": ["snow"], "remove": []}
    kept = {p: p.stat().st_mtime_ns for name in ("p0", "p3") for p in (out / name).iterdir()}
    (out / "p1" / "edited.png").unlink()          # an image with a missing output ...
    shutil.rmtree(out / "p2")                     # ... and one without any
    again = run_tool(args, tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr        # no silent overwrite of a run
    resumed = run_tool(args + ["--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(2 already done, 2 to run)" in resumed.stderr, resumed.stderr
    lines = results(out)
    assert [line["output"] for line in lines[4:]] in (["p1", "p2"], ["p2", "p1"]), lines
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "a finished image was redone"
    assert_complete(out, lines[4:] + [line for line in lines[:4] if line["output"] in ("p0", "p3")])


def test_a_corrupt_image_is_reported_and_skipped(servers, tmp_path):
    images = write_images(tmp_path / "in", 2, seed=4)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (images / "cut.jpg").write_bytes((images / "p0.png").read_bytes()[:40])
    proc = run_tool(["--image", images, "--remove", "cat", "--steps", 3, "--out", tmp_path / "out"]
                    + server_args(servers), tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]                   # 1: some images failed
    lines = {line["output"]: line for line in results(tmp_path / "out")}
    assert sorted(lines) == ["broken", "cut", "p0", "p1"]
    for name in ("broken", "cut"):
        assert lines[name]["status"] == "failed" and "cannot read image" in lines[name]["error"], lines[name]
        assert f"FAILED {lines[name]['input'].split('/')[-1]}" in proc.stderr
    assert all(lines[f"p{i}"]["status"] == "done" for i in range(2))
    assert_complete(tmp_path / "out", list(lines.values()))


def test_sigint_interrupts_our_prompts_and_keeps_finished_outputs(servers, tmp_path):
    before = {s.url: set(s.get_json("/history")) for s in servers}
    images = write_images(tmp_path / "in", 6, seed=5)
    out = tmp_path / "out"
    proc, log = start_tool(["--image", images, "--add", "glasses", "--steps", 4] + server_args(servers), out)
    try:
        wait_until(lambda: (out / "results.jsonl").exists() and (out / "results.jsonl").read_text().strip(),
                   proc, "a finished image")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT_S) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = log.read_text()
    assert "Ctrl-C: interrupted" in stderr and "--resume" in stderr, stderr
    for server in servers:                        # our waiting prompts were deleted before we exited
        assert not server.get_json("/queue")["queue_pending"], f"prompts left queued on {server.url}"
    lines = results(out)
    assert 1 <= len(lines) < 6 and all(line["status"] == "done" for line in lines)
    assert_complete(out, lines)
    statuses = []
    for server in servers:
        deadline = time.monotonic() + TIMEOUT_S
        while server.get_json("/queue")["queue_running"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        history = server.get_json("/history")
        statuses += [[e for e, _ in entry["status"]["messages"]] for pid, entry in history.items()
                     if pid not in before[server.url]]
    assert any("execution_interrupted" in events for events in statuses), statuses
    assert len(statuses) < 6, "prompts ran on after the interrupt"


def test_sigint_in_process_stops_after_the_running_step(comfy_host, tmp_path):
    """In-process, Ctrl-C raises ComfyUI's interrupt flag (checked at every step): the running image
    stops, nothing of it is written, the finished ones stay."""
    images = write_images(tmp_path / "in", 4, seed=8)
    out = tmp_path / "out"
    proc, log = start_tool(["--image", images, "--steps", 40, "--comfyui", comfy_host["root"]], out)
    try:
        wait_until(lambda: (out / "results.jsonl").exists() and (out / "results.jsonl").read_text().strip(),
                   proc, "a finished image")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT_S) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted: finished images are kept" in log.read_text()
    lines = results(out)
    assert 1 <= len(lines) < 4 and all(line["status"] == "done" for line in lines), lines
    assert_complete(out, lines)


def test_unusable_servers_are_named(servers, tmp_path):
    images = write_images(tmp_path / "in", 2, seed=6)
    port = SERVERS._free_port()
    proc = run_tool(["--image", images, "--add", "x", "--out", tmp_path / "out", "--server", servers[0].url,
                     "--server", f"http://127.0.0.1:{port}", "--ckpt", "missing.safetensors"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"server {servers[0].url} left out: checkpoint 'missing.safetensors' is not in" in proc.stderr
    assert CKPT in proc.stderr                          # it says what the server has
    assert f"server http://127.0.0.1:{port} left out: not reachable" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "ledits_edit: error: no usable --server (see the lines above)"
    assert not (tmp_path / "out" / "results.jsonl").exists()


# -- the input side, without servers -------------------------------------------------------------

@pytest.fixture(scope="module")
def tool():
    from test_ledits_edit_cli import load_tool
    return load_tool()


def test_inputs_concepts_files_exif_and_sizes(tool, tmp_path):
    inputs = tool.tool_module("batch_inputs")
    folder = write_images(tmp_path / "in", 2)
    Image.new("RGB", (100, 70)).save(folder / "odd.webp")
    (folder / "notes.txt").write_text("not an image")
    exif = Image.Exif()
    exif[0x0112] = 6                                   # orientation: rotate 90° clockwise to view
    Image.new("RGB", (80, 48), (200, 10, 10)).save(folder / "camera.jpg", exif=exif)
    (tmp_path / "c.json").write_text(json.dumps({"camera.jpg": {"add": ["sky"], "seed": 5}}))
    jobs = inputs.plan([folder], tmp_path / "c.json", ["glasses"], [], 1)
    assert [j.path.name for j in jobs] == ["camera.jpg", "odd.webp", "p0.png", "p1.png"]
    assert [(j.adds, j.seed) for j in jobs] == [(["sky"], 5)] + [(["glasses"], 1)] * 3
    camera = inputs.prepare(jobs[0], tool, 512)
    assert camera.size == (48, 80) and camera.note == ""          # upright, already multiples of 8
    odd = inputs.prepare(jobs[1], tool, 512)
    assert odd.size == (96, 64) and "100x70 -> 96x64" in odd.note and "multiples of 8" in odd.note
    assert inputs.prepare(jobs[1], tool, 64).size == (64, 40)
    # CSV, names that collide, listed files without --image
    (folder / "p0.jpg").write_bytes((folder / "camera.jpg").read_bytes())
    (tmp_path / "c.csv").write_text("image,add,remove,seed\ncamera.jpg,a;b,c,3\n")
    jobs = inputs.plan([folder / "p0.png", folder / "p0.jpg", folder / "camera.jpg"], tmp_path / "c.csv", [], ["x"], 0)
    assert [j.name for j in jobs] == ["p0-png", "p0-jpg", "camera"]
    assert (jobs[2].adds, jobs[2].removes, jobs[2].seed) == (["a", "b"], ["c"], 3)
    (folder / "only.csv").write_text("image,add\np1.png,hat\n")
    assert [j.path.name for j in inputs.plan([], folder / "only.csv", [], [], 0)] == ["p1.png"]
    for text, needle in [("image,add,colour\np0.png,x,red\n", "header"), ("image,add,seed\np0.png,x,abc\n", "seed"),
                         ("image,add\nnope.png,x\n", "not among the input images"),
                         ("image,add\np0.png,x\np0.png,y\n", "listed twice")]:
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(inputs.InputError, match=needle):
            inputs.plan([folder / "p0.png"], tmp_path / "bad.csv", [], [], 0)
    with pytest.raises(inputs.InputError, match="nothing to edit"):
        inputs.plan([folder / "p1.png"], None, [], [], 0)
    (tmp_path / "bad.json").write_text('{"p0.png": {"add": ["x"], "colour": 1}}')
    with pytest.raises(inputs.InputError, match="unknown keys"):
        inputs.plan([folder / "p0.png"], tmp_path / "bad.json", [], [], 0)


def test_sigint_stops_a_single_image_edit(comfy_host, tmp_path):
    """One --image (not a batch): Ctrl-C stops the run at its next step with exit 130 and writes
    nothing (before, asyncio.run inside the executor swallowed SIGINT and the run went on)."""
    image = write_images(tmp_path / "in", 1, seed=9) / "p0.png"
    out = tmp_path / "out"
    proc, log = start_tool(["--image", image, "--steps", 200, "--comfyui", comfy_host["root"]], out)
    try:
        wait_until(lambda: "200/200 steps" in log.read_text(), proc, "the inversion's end (the edit runs next)")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT_S) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in log.read_text()
    assert not out.exists() or not any(out.iterdir())
