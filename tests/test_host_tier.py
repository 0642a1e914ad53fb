"""Host tier driver: runs tests/host inside each real ComfyUI (see conftest.discover_hosts), in
that host's own venv, as a subprocess. Without a host the test is skipped with a loud reason."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
HOST_TIMEOUT_S = 3000


def host_python(root):
    for venv in (".venv", "venv"):
        python = root / venv / "bin" / "python"
        if python.exists():
            return str(python)
    return sys.executable


def test_host_tier(host_root):
    if host_root is None:
        pytest.skip("host tier skipped: no ComfyUI found via COMFYUI_PATH, a parent custom_nodes/ "
                    "folder, ~/ComfyUI or ~/ComfyUI-0.3.64")
    python = host_python(host_root)
    probe = subprocess.run([python, "-c", "import pytest, torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"{python} cannot import pytest/torch: install them into that environment "
                    f"(`{python} -m pip install pytest`): {probe.stderr.strip()[-300:]}")
    env = dict(os.environ, COMFYUI_PATH=str(host_root), LEDITS_HOST_RUN="1", PYTHONUNBUFFERED="1")
    cmd = [python, "-m", "pytest", "tests/host", "-p", "no:cacheprovider", "-rA" if os.environ.get("LEDITS_VERBOSE") else "-ra"]
    print(f"\n=== host tier on {host_root}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=HOST_TIMEOUT_S)
    print(proc.stdout[-30000:])
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    summary = lines[-1] if lines else ""
    passed = re.search(r"(\d+) passed", summary)
    assert proc.returncode == 0, f"host tier failed on {host_root} (exit {proc.returncode}): {summary}"
    assert passed and int(passed.group(1)) > 0, f"host tier ran no tests on {host_root}: {summary}"
