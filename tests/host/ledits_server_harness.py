"""A real ComfyUI server on 127.0.0.1 for the host tier (test-only helper, reached via conftest).

Runs this host with the pack and the test-only tiny-model node linked into a temporary
custom_nodes folder, temporary input/output/user folders, so the host tree is never modified.
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
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = pathlib.Path(__file__).resolve().parent / "fixture_node"


class Server:
    def __init__(self, base, port, log):
        self.base, self.port, self.log = base, port, log
        self.url = f"http://127.0.0.1:{port}"

    def request(self, path, data=None, timeout=30):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def queue(self, prompt):
        status, body = self.request("/prompt", {"prompt": prompt, "client_id": "ledits-tests"})
        assert status == 200 and not body.get("node_errors"), f"/prompt answered {status}: {body}"
        return body["prompt_id"]

    def wait(self, prompt_id, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, history = self.request(f"/history/{prompt_id}")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry and entry.get("status", {}).get("completed") is not None and \
                    entry["status"].get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt, timeout=600):
        return self.wait(self.queue(prompt), timeout)

    def output_file(self, entry, node, key="images"):
        item = entry["outputs"][node][key][0]
        return self.base / "output" / item.get("subfolder", "") / item["filename"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base, host):
    """Start the server; returns (Server, stop function)."""
    custom = base / "custom_nodes"
    custom.mkdir(exist_ok=True)
    for name, target in (("ComfyUI-LEDITS-PP", REPO), ("ledits_test_fixture", FIXTURE)):
        if not (custom / name).exists():
            (custom / name).symlink_to(target, target_is_directory=True)
    (base / "user").mkdir(exist_ok=True)
    config = base / "extra_model_paths.yaml"
    config.write_text(f"ledits_tests:\n  base_path: {base}\n  checkpoints: checkpoints\n  custom_nodes: custom_nodes\n")
    port = free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--use-pytorch-cross-attention", "--disable-api-nodes", "--listen",
         "127.0.0.1", "--port", str(port), "--disable-auto-launch", "--output-directory", str(base / "output"),
         "--input-directory", str(base / "input"), "--temp-directory", str(base / "temp"), "--user-directory",
         str(base / "user"), "--extra-model-paths-config", str(config)],
        cwd=host, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(base, port, base / "server.log")
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited:\n" + srv.log.read_text()[-3000:])
        try:
            if srv.request("/system_stats", timeout=2)[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            time.sleep(0.5)
    else:
        raise RuntimeError("the server did not answer in 180 s:\n" + srv.log.read_text()[-3000:])

    def stop():
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return srv, stop


def edit_api_prompt(ckpt, concept="glasses", steps=3, seed=0, edit_ckpt=None, width=64, height=64):
    """API-format prompt: tiny checkpoint -> empty latent -> Inversion -> one concept -> Guided Edit
    -> SaveLatent (node ids: 1 loader, 2 empty text, 3 latent, 4 inversion, 5 concept, 6 edit, 7 save)."""
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "4": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": ["3", 0], "steps": steps, "skip": 0.15, "seed": seed,
            "schedule": "exact", "source_cfg": 3.5, "negative": ["2", 0]}},
        "5": {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": concept, "scale": 5.0, "threshold": 0.9, "reverse": False, "warmup": 0,
            "cooldown": 10000, "mask_type": "intersect"}},
        "6": {"class_type": "LEditsPPGuidedEdit", "inputs": {
            "model": ["1", 0], "inversion": ["4", 0], "concepts": ["5", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "ledits_bad_input"}},
    }
    if edit_ckpt:
        prompt["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": edit_ckpt}}
        prompt["6"]["inputs"]["model"] = ["9", 0]
    return prompt
