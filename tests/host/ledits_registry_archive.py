"""The Comfy Registry's view of the pack, through comfy-cli itself (test-only): `comfy node validate`
and `comfy node pack`. Used by tests/core/test_registry_package.py (core tier) and
tests/host/test_registry_archive.py (the archive installed into a real server).

Why a staging copy: `comfy node pack` zips the git-tracked files of the current folder (their
working-tree content, .comfyignore read from disk) and writes node.zip next to them. Packing a
copy of exactly those files keeps the repository untouched while other runs use it.

Why nothing reaches the network: comfy-cli runs with a temporary HOME (its config and consent
state) and DO_NOT_TRACK / COMFY_NO_TELEMETRY (its tracking.py returns before building any
telemetry client) and COMFY_NO_UPDATE_CHECK (the PyPI version check, which only the bare `comfy`
welcome screen runs). validate and pack themselves only call git and ruff. NETWORK_GUARD proves
it: comfy-cli's Python runs under an audit hook that refuses and reports every socket connect or
name lookup.
"""
import os
import pathlib
import shutil
import subprocess
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
COMFY_CLI_PIN = "comfy-cli==1.23.0"       # what .ci/run installs into .venv
ABSENT = (f"comfy-cli not found (neither `comfy` on PATH nor {REPO / '.venv/bin/comfy'}): the Registry "
          f"checks (comfy node validate / pack, the archive install test) are skipped; "
          f"`.ci/run` installs {COMFY_CLI_PIN} into .venv")
NETWORK_ATTEMPT = "NETWORK ATTEMPT"
NETWORK_GUARD = f"""
import sys
def guard(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
        sys.stderr.write("{NETWORK_ATTEMPT}: %s %r\\n" % (event, args))
        raise OSError("network disabled for comfy-cli in the LEDITS++ tests")
sys.addaudithook(guard)
sys.argv[0] = "comfy"
from comfy_cli.__main__ import main
sys.exit(main())
"""
PACK_NODES = ["LEditsPPInversion", "LEditsPPEditConcept", "LEditsPPAttentionCapture",
              "LEditsPPMaskFromAttention", "LEditsPPGuidedEdit", "LEditsPPGuider", "LEditsPPSampler"]


def comfy_cli_python():
    """The Python that runs comfy-cli (from the `comfy` script's shebang), or None."""
    found = shutil.which("comfy") or (REPO / ".venv" / "bin" / "comfy")
    script = pathlib.Path(found)
    if not script.is_file():
        return None
    first = script.read_bytes()[:400].split(b"\n", 1)[0].decode(errors="replace")
    shebang = pathlib.Path(first[2:].strip().split(" ")[0]) if first.startswith("#!") else None
    for python in (shebang, script.parent / "python"):
        if python and python.is_file() and "python" in python.name:
            return python
    return None


def require_comfy_cli():
    """comfy-cli's Python; skips loudly without it (fails in CI, where .ci/run installs it)."""
    python = comfy_cli_python()
    if python is None:
        if os.environ.get("LEDITS_REQUIRE_COMFY_CLI") == "1":
            pytest.fail(ABSENT, pytrace=False)
        print("\n!!! " + ABSENT)
        pytest.skip(ABSENT)
    return python


def run_comfy(python, args, cwd, home):
    """`comfy --skip-prompt --no-json <args>` in cwd, offline: (returncode, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY", "POSTHOG"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), DO_NOT_TRACK="1",
               COMFY_NO_TELEMETRY="1", COMFY_NO_UPDATE_CHECK="1", NO_COLOR="1", TERM="dumb")
    proc = subprocess.run([str(python), "-c", NETWORK_GUARD, "--skip-prompt", "--no-json", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


def tracked_files():
    """The repository's git-tracked files that exist in the working tree (what comfy-cli packs)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout ({error}): comfy node pack packs git-tracked files")
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


def stage(dst):
    """dst = a git repository holding the tracked files (+ .comfyignore, read from disk by comfy-cli)."""
    names = tracked_files()
    if (REPO / ".comfyignore").is_file() and ".comfyignore" not in names:
        names.append(".comfyignore")
    for name in names:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dst / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A", "-f"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def validate_and_pack(work):
    """Stage the pack in work/, run `comfy node validate` and `comfy node pack` there.

    Returns {"validate": (rc, out, err), "pack": (rc, out, err), "zip": path or None}."""
    python = require_comfy_cli()
    home, src = work / "home", stage(work / "src")
    home.mkdir(exist_ok=True)
    result = {"validate": run_comfy(python, ["node", "validate"], src, home),
              "pack": run_comfy(python, ["node", "pack"], src, home)}
    zip_path = src / "node.zip"
    result["zip"] = zip_path if zip_path.is_file() else None
    return result


def build_archive(work):
    """The Registry archive (node.zip) built by comfy-cli; fails with comfy-cli's output otherwise."""
    result = validate_and_pack(work)
    rc, out, err = result["pack"]
    assert rc == 0 and result["zip"], f"comfy node pack failed ({rc}):\n{out}\n{err}"
    return result["zip"]


def install_like_manager(zip_path, custom_nodes, folder="ledits-pp"):
    """Unzip the archive into custom_nodes/<folder> (the Manager names it after [project].name)."""
    target = custom_nodes / folder
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target
