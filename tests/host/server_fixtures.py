"""HTTP tier: a real ComfyUI server (main.py) as a subprocess, with this pack and the test-only
fixture node loaded from a temp custom_nodes folder.

Why a subprocess: only main.py exercises ComfyUI's real start-up (custom node discovery, route
registration, /object_info, the prompt queue). Nothing is written into the ComfyUI tree: models,
custom nodes, input/output/temp/user folders and the database all live in the session's temp dir.
Loaded by tests/host/conftest.py under a unique module name; fixtures: comfy_server, post_prompt,
interrupt.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURE_NODE = pathlib.Path(__file__).resolve().parent / "fixture_node"
PACK_LINK = "ComfyUI-LEDITS-PP"           # the pack's folder name inside the temp custom_nodes
FIXTURE_LINK = "ledits_test_fixture"      # test-only: registers the tiny model classes
PACK_NODES = ["LEditsPPInversion", "LEditsPPEditConcept", "LEditsPPAttentionCapture",
              "LEditsPPMaskFromAttention", "LEditsPPGuidedEdit", "LEditsPPGuider", "LEditsPPSampler"]
READY_TIMEOUT_S = 120
PROMPT_TIMEOUT_S = 600   # 2 shared CPU cores: timings vary up to 20x (host_testing.md §7)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """Handle on a running server: url, paths, and small HTTP helpers."""

    def __init__(self, proc, port, log_path, dirs):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.dirs = dirs                       # name -> pathlib.Path (output, input, temp, user, ...)
        self.base = dirs["base"]               # holds input/ and output/ (tests may write inputs there)
        self.log = log_path
        self.client_id = "ledits-tests-" + uuid.uuid4().hex[:8]

    # -- raw HTTP ---------------------------------------------------------------------------
    def http(self, method, path, body=None, timeout=30):
        """(status, parsed JSON or raw bytes); HTTP errors are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, kind = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, raw, kind = err.code, err.read(), err.headers.get("Content-Type", "")
        if "json" in kind:
            return status, json.loads(raw or b"null")
        return status, raw

    def request(self, path, data=None, timeout=30):
        """GET `path`, or POST `data` as JSON: (status, body)."""
        return self.http("GET" if data is None else "POST", path, data, timeout)

    def get_json(self, path):
        status, body = self.http("GET", path)
        assert status == 200, f"GET {path} -> {status}: {body!r:.500}"
        return body

    def object_info(self, node_id):
        """The node's /object_info entry, or None when the server does not know it."""
        return self.get_json("/object_info/" + urllib.parse.quote(node_id)).get(node_id)

    def view(self, file_info):
        """Bytes of an output file, given an entry of a history `images` list."""
        query = urllib.parse.urlencode({k: file_info.get(k, "") for k in ("filename", "subfolder", "type")})
        status, body = self.http("GET", "/view?" + query)
        assert status == 200, f"GET /view?{query} -> {status}"
        return body

    # -- prompts ----------------------------------------------------------------------------
    def post_prompt(self, api, timeout=PROMPT_TIMEOUT_S, expect_error=False):
        """POST an API-format prompt and wait for its /history entry.

        Returns the history entry ({"prompt", "outputs", "status", ...}). Raises AssertionError
        with ComfyUI's error text when validation or execution fails, unless expect_error=True:
        then the 400 body (validation) or the failed history entry is returned, and success fails."""
        status, body = self.http("POST", "/prompt", {"prompt": api, "client_id": self.client_id})
        rejected = status != 200 or bool(body.get("node_errors"))
        if rejected:
            if expect_error:
                return body
            raise AssertionError(f"POST /prompt rejected ({status}): {json.dumps(body)[:4000]}")
        prompt_id = body["prompt_id"]
        entry = self.wait(prompt_id, timeout)
        ok = entry["status"].get("status_str") == "success"
        if expect_error:
            assert not ok, f"prompt {prompt_id} was expected to fail but succeeded"
        elif not ok:
            errors = [data for event, data in entry["status"].get("messages", []) if event == "execution_error"]
            raise AssertionError(f"prompt {prompt_id} failed: {json.dumps(errors)[:4000]}")
        return entry

    def queue(self, api):
        """POST /prompt without waiting; returns the prompt id (asserts no node_errors)."""
        status, body = self.http("POST", "/prompt", {"prompt": api, "client_id": self.client_id})
        assert status == 200 and not body.get("node_errors"), f"/prompt answered {status}: {body}"
        return body["prompt_id"]

    def wait(self, prompt_id, timeout=PROMPT_TIMEOUT_S):
        """The /history entry of `prompt_id` once done (success or error)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            self.assert_alive()
            if time.monotonic() > deadline:
                self.interrupt()
                raise AssertionError(f"prompt {prompt_id} not done after {timeout} s")
            time.sleep(0.1)

    def run(self, api, timeout=PROMPT_TIMEOUT_S):
        """queue + wait; the entry is returned whether the run succeeded or failed."""
        return self.wait(self.queue(api), timeout)

    def output_file(self, entry, node, key="images"):
        """Path of the first file a node saved (from a history entry)."""
        item = entry["outputs"][node][key][0]
        return self.dirs[item.get("type", "output")] / item.get("subfolder", "") / item["filename"]

    def interrupt(self):
        status, _ = self.http("POST", "/interrupt", {})
        assert status == 200, f"POST /interrupt -> {status}"

    # -- process and log --------------------------------------------------------------------
    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars=6000):
        return self.log_text()[-chars:]

    def import_failures(self, *names):
        """Log lines reporting a failed custom-node import that mention one of `names`."""
        names = [n.lower() for n in names]
        return [line for line in self.log_text().splitlines()
                if ("IMPORT FAILED" in line or "Cannot import" in line) and any(n in line.lower() for n in names)]

    def assert_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"ComfyUI server exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def installed_as(host_root):
    """The folder name under which the host's own custom_nodes holds this pack (a copy or a
    symlink; main.py loads it from there), else None."""
    folder = pathlib.Path(host_root) / "custom_nodes"
    entries = sorted(folder.iterdir()) if folder.is_dir() else []
    return next((entry.name for entry in entries if entry.resolve() == REPO), None)


def _prepare_dirs(base, link_pack=True):
    """Temp folders for the server; custom_nodes links the fixture node and, unless the host
    already loads the pack from its own custom_nodes (a second copy would register twice), the pack."""
    dirs = {name: base / name for name in ("custom_nodes", "output", "input", "temp", "user")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    if link_pack:
        (dirs["custom_nodes"] / PACK_LINK).symlink_to(REPO, target_is_directory=True)
    (dirs["custom_nodes"] / FIXTURE_LINK).symlink_to(FIXTURE_NODE, target_is_directory=True)
    return dirs


def _extra_paths_yaml(path, custom_nodes, checkpoints):
    path.write_text("ledits_host_tests:\n"                       # JSON strings are valid YAML
                    f"    custom_nodes: {json.dumps(str(custom_nodes))}\n"
                    f"    checkpoints: {json.dumps(str(checkpoints))}\n")
    return path


def start_server(host_root, base, checkpoints_dir, installed_pack=None, env=None):
    """Start main.py on a free port and wait for /system_stats; returns a ComfyServer. env: extra
    environment variables (OMP_NUM_THREADS=1 for several servers that share a few cores).

    installed_pack: the folder name of a pack copy already in base/custom_nodes (an unzipped
    Registry archive); the server then runs with --base-directory base, so base/custom_nodes is
    its only custom_nodes folder: fresh, as after a Manager install, without the host's own."""
    installed = None if installed_pack else installed_as(host_root)
    dirs = _prepare_dirs(base, link_pack=installed is None and not installed_pack)
    config = _extra_paths_yaml(base / "extra_model_paths.yaml", dirs["custom_nodes"], checkpoints_dir)
    port = _free_port()
    cmd = [sys.executable, "main.py", "--cpu", "--use-pytorch-cross-attention", "--disable-api-nodes",
           "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--output-directory", str(dirs["output"]), "--input-directory", str(dirs["input"]),
           "--temp-directory", str(dirs["temp"]), "--user-directory", str(dirs["user"]),
           "--database-url", f"sqlite:///{base / 'comfyui.db'}",
           "--extra-model-paths-config", str(config)] + (["--base-directory", str(base)] if installed_pack else [])
    log_path = base / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    env.pop("LEDITS_HOST_RUN", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=host_root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = ComfyServer(proc, port, log_path, dict(dirs, base=base, checkpoints=pathlib.Path(checkpoints_dir)))
    started = time.monotonic()
    while True:
        server.assert_alive()
        try:
            if server.http("GET", "/system_stats", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() - started > READY_TIMEOUT_S:
            server.stop()
            raise AssertionError(f"server not ready after {READY_TIMEOUT_S} s; log tail:\n{server.log_tail()}")
        time.sleep(0.25)
    server.ready_s = time.monotonic() - started
    server.pack_folder = installed_pack or installed or PACK_LINK  # the pack's folder name in this server
    return server


def check_registration(server):
    """Fail loudly when the pack or the fixture node did not import in the server."""
    pack_written = (REPO / "nodes" / "__init__.py").exists()  # else test_harness xfails registration
    failures = server.import_failures(*([server.pack_folder, FIXTURE_LINK] if pack_written else [FIXTURE_LINK]))
    assert not failures, "custom node import failed in the server:\n" + "\n".join(failures) + \
        "\n--- log tail ---\n" + server.log_tail()
    if not pack_written:
        return
    missing = [node_id for node_id in PACK_NODES if server.object_info(node_id) is None]
    assert not missing, f"pack nodes missing from /object_info: {missing}\n--- log tail ---\n{server.log_tail()}"


@pytest.fixture(scope="session")
def comfy_server(comfy_host, tiny_ckpt, session_dir):
    """A running ComfyUI server of this host with the pack and the tiny checkpoints.

    Session-scoped (start ≈ 5-10 s); SIGTERMed at session end. Yields a ComfyServer."""
    server = start_server(comfy_host["root"], session_dir / "server", session_dir / "checkpoints")
    try:
        print(f"\nComfyUI server {server.url} ready in {server.ready_s:.1f} s (log: {server.log_path})")
        check_registration(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def post_prompt(comfy_server):
    """post_prompt(api, timeout=600, expect_error=False) -> /history entry."""
    return comfy_server.post_prompt


@pytest.fixture(scope="session")
def interrupt(comfy_server):
    """interrupt() -> POST /interrupt."""
    return comfy_server.interrupt
