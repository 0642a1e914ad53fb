"""Test tiers: tests/core always runs (pure torch). tests/host runs only inside a ComfyUI host's
Python, started by tests/test_host_tier.py with LEDITS_HOST_RUN=1 (one subprocess per host), so
the outer session never imports ComfyUI.

Hosts: COMFYUI_PATH (':'-separated roots), else the ComfyUI above this pack when it sits in
<ComfyUI>/custom_nodes/<pack>, else ~/ComfyUI and ~/ComfyUI-0.3.64 if they exist. A usable root
has comfy/model_base.py.
"""
import os
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
INNER = os.environ.get("LEDITS_HOST_RUN") == "1"
collect_ignore = [] if INNER else ["host"]
NO_HOST = ("host tier skipped: no ComfyUI found via COMFYUI_PATH, parent custom_nodes, "
           "~/ComfyUI or ~/ComfyUI-0.3.64")


def is_host(path):
    return (path / "comfy" / "model_base.py").is_file()


def discover_hosts():
    """Usable ComfyUI roots, in order, without duplicates."""
    if os.environ.get("COMFYUI_PATH"):
        candidates = [pathlib.Path(p).expanduser() for p in os.environ["COMFYUI_PATH"].split(":") if p]
    else:
        candidates = []
        # the pack's folder as resolved, or as the shell sees it (a symlink in custom_nodes)
        for pack in (REPO, pathlib.Path(os.environ.get("PWD") or ".")):
            if pack.parent.name == "custom_nodes" and pack.resolve() == REPO:
                candidates.append(pack.parent.parent)
        candidates += [pathlib.Path.home() / "ComfyUI", pathlib.Path.home() / "ComfyUI-0.3.64"]
    hosts = []
    for path in candidates:
        path = path.resolve()
        if path not in hosts and is_host(path):
            hosts.append(path)
    return hosts


def host_version(root):
    try:
        match = re.search(r'__version__\s*=\s*["\']([^"\']+)', (root / "comfyui_version.py").read_text())
    except OSError:
        match = None
    return match.group(1) if match else "unknown"


def host_label(root):
    """Test id of a host, e.g. "ComfyUI-0.33.0"."""
    return f"ComfyUI-{host_version(root)}"


HOSTS = [] if INNER else discover_hosts()


def pytest_report_header(config):
    if INNER:
        return None
    if not HOSTS:
        return "!!! " + NO_HOST
    return "host tier on: " + ", ".join(f"{host_label(h)} at {h}" for h in HOSTS)


def pytest_generate_tests(metafunc):
    if "host_root" not in metafunc.fixturenames:
        return
    if not HOSTS:
        metafunc.parametrize("host_root", [pytest.param(None, marks=pytest.mark.skip(reason=NO_HOST))],
                             ids=["no-host"])
        return
    labels = [host_label(h) for h in HOSTS]
    ids = [label if labels.count(label) == 1 else f"{label}-{h.name}" for label, h in zip(labels, HOSTS)]
    metafunc.parametrize("host_root", HOSTS, ids=ids)


def pytest_terminal_summary(terminalreporter):
    if INNER:
        return
    if not HOSTS:
        terminalreporter.write_line("!!! " + NO_HOST, yellow=True, bold=True)
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "host_tier" and getattr(report, "when", "call") == "call":
                    terminalreporter.write_line(value, bold=True)
