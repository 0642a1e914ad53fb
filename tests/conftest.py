"""Test tiers: tests/core always runs (pure torch). tests/host runs only inside a ComfyUI host's
Python, started by tests/test_host_tier.py with LEDITS_HOST_RUN=1 (one subprocess per host).

Hosts: COMFYUI_PATH (':'-separated), else the ComfyUI above this pack when it sits in
custom_nodes/, else ~/ComfyUI and ~/ComfyUI-0.3.64.
"""
import os
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
INNER = os.environ.get("LEDITS_HOST_RUN") == "1"
collect_ignore = [] if INNER else ["host"]
NO_HOST = ("host tier skipped: no ComfyUI found via COMFYUI_PATH, a parent custom_nodes/ folder, "
           "~/ComfyUI or ~/ComfyUI-0.3.64")


def _is_host(path):
    return (path / "comfy" / "model_base.py").is_file() and (path / "main.py").is_file()


def discover_hosts():
    if os.environ.get("COMFYUI_PATH"):
        candidates = [pathlib.Path(p).expanduser() for p in os.environ["COMFYUI_PATH"].split(":") if p]
    else:
        candidates = []
        if REPO.parent.name == "custom_nodes":
            candidates.append(REPO.parent.parent)
        candidates += [pathlib.Path.home() / "ComfyUI", pathlib.Path.home() / "ComfyUI-0.3.64"]
    hosts = []
    for path in candidates:
        path = path.resolve()
        if path not in hosts and _is_host(path):
            hosts.append(path)
    return hosts


def host_version(root):
    match = re.search(r'__version__\s*=\s*"([^"]+)"', (root / "comfyui_version.py").read_text())
    return match.group(1) if match else "unknown"


HOSTS = [] if INNER else discover_hosts()


def pytest_report_header(config):
    if INNER:
        return None
    if not HOSTS:
        return "!!! " + NO_HOST
    return "host tier on: " + ", ".join(f"ComfyUI {host_version(h)} at {h}" for h in HOSTS)


def pytest_generate_tests(metafunc):
    if "host_root" in metafunc.fixturenames:
        params = HOSTS or [None]
        ids = [f"ComfyUI-{host_version(h)}" for h in HOSTS] or ["no-host"]
        metafunc.parametrize("host_root", params, ids=ids)


def pytest_terminal_summary(terminalreporter):
    if not INNER and not HOSTS:
        terminalreporter.write_line("!!! " + NO_HOST, yellow=True, bold=True)
