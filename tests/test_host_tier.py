"""Host tier driver: runs tests/host inside each real ComfyUI (see conftest.discover_hosts), in that
host's own Python, as a subprocess — the outer session never imports ComfyUI, and each host gets a
clean interpreter (ComfyUI's module-level state cannot leak between hosts).

Without a host the single test is skipped with a loud reason (conftest also prints it)."""
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
HOST_TIMEOUT_S = 2400  # per host; both hosts must fit into CI's 90 minutes
SUMMARY = re.compile(r"\b(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


def host_python(root):
    """<root>/.venv or <root>/venv, else the Python running this session."""
    for venv in (".venv", "venv"):
        python = root / venv / "bin" / "python"
        if python.exists():
            return str(python)
    return sys.executable


def parse_summary(output):
    """Counts from pytest's last summary line ("3 passed, 1 skipped in 2.0s") -> {"passed": 3, ...}."""
    for line in reversed(output.splitlines()):
        found = SUMMARY.findall(line)
        if found and (" in " in line or "no tests ran" in line):
            counts = {}
            for number, kind in found:
                kind = "errors" if kind.startswith("error") else kind
                counts[kind] = counts.get(kind, 0) + int(number)
            return counts, line.strip(" =")
    return {}, (output.strip().splitlines() or ["<no output>"])[-1]


def run_streaming(cmd, env):
    """Run the inner pytest, echoing each line as it comes (visible live with -s); returns (rc, text)."""
    lines = []
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    watchdog = threading.Timer(HOST_TIMEOUT_S, proc.kill)  # a hung host must not hang the outer run
    watchdog.start()
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    finally:
        watchdog.cancel()
    returncode = proc.wait()
    if returncode == -9:
        lines.append(f"\n!!! host tier killed after {HOST_TIMEOUT_S} s\n")
    return returncode, "".join(lines)


def test_host_tier(host_root, record_property):
    python = host_python(host_root)
    probe = subprocess.run([python, "-c", "import pytest"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"the Python of {host_root} ({python}) has no pytest: run `{python} -m pip install pytest` "
                    f"(host tier needs pytest inside each ComfyUI venv). {probe.stderr.strip()[-300:]}",
                    pytrace=False)
    env = dict(os.environ, COMFYUI_PATH=str(host_root), LEDITS_HOST_RUN="1", PYTHONUNBUFFERED="1")
    cmd = [python, "-m", "pytest", "tests/host", "-q", "-p", "no:cacheprovider",
           "-rA" if os.environ.get("LEDITS_VERBOSE") else "-ra"]
    print(f"\n=== host tier on {host_root}: {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    returncode, output = run_streaming(cmd, env)
    counts, summary = parse_summary(output)
    line = f"host tier on {host_root}: exit {returncode}, {summary} ({time.monotonic() - started:.0f} s wall)"
    print("=== " + line)
    record_property("host_tier", line)          # repeated in the final summary (conftest), pass or fail
    if returncode == 5:
        pytest.fail(f"host tier on {host_root} collected no tests (exit 5): {summary}", pytrace=False)
    assert returncode == 0, f"host tier failed on {host_root} (exit {returncode}): {summary}"
    assert counts.get("passed", 0) > 0, f"host tier passed no tests on {host_root}: {summary}"
