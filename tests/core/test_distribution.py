"""Distribution checks (core tier, no ComfyUI needed): what the Comfy Registry and ComfyUI-Manager
expect of the shipped pack.

Shipped code = every file outside tests/, tools/, bench/ and hidden folders. It must contain no
eval/exec, no runtime pip/subprocess install, no network access, no absolute paths; import itself
only relatively (Manager picks the folder name) and otherwise only the standard library and what
ComfyUI ships; import fast (the root __init__ registers nodes lazily). pyproject.toml must carry
the Registry's keys and requirements.txt nothing that ComfyUI already installs.
"""
import ast
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
NOT_SHIPPED = {"tests", "tools", "bench", "test-artifacts", "workflows", "__pycache__"}
# What a ComfyUI install provides (its requirements.txt and its own top-level modules/packages).
COMFY_SHIPS = {
    "torch", "torchsde", "torchvision", "torchaudio", "numpy", "einops", "transformers", "tokenizers",
    "sentencepiece", "safetensors", "aiohttp", "yarl", "yaml", "PIL", "scipy", "tqdm", "psutil", "alembic",
    "sqlalchemy", "av", "kornia", "spandrel", "pydantic", "pydantic_settings", "requests",
    "comfy", "comfy_api", "comfy_execution", "comfy_extras", "comfy_config", "folder_paths", "nodes",
    "node_helpers", "latent_preview", "server", "execution", "comfyui_version", "app", "utils",
}
COMFY_REQUIREMENT_NAMES = {
    "torch", "torchsde", "torchvision", "torchaudio", "numpy", "einops", "transformers", "tokenizers",
    "sentencepiece", "safetensors", "aiohttp", "yarl", "pyyaml", "pillow", "scipy", "tqdm", "psutil", "alembic",
    "sqlalchemy", "av", "kornia", "spandrel", "pydantic", "pydantic-settings", "requests",
    "comfyui-frontend-package", "comfyui-workflow-templates", "comfyui-embedded-docs",
}
NETWORK_MODULES = {"socket", "requests", "httpx", "urllib3", "http.client", "urllib.request", "ftplib",
                   "smtplib", "telnetlib", "websocket", "websockets", "aiohttp.client"}
INSTALL_MODULES = {"subprocess", "pip", "ensurepip", "pty"}
ABSOLUTE_PATH = re.compile(r"^(?:/(?:root|home|tmp|usr|opt|var|etc|mnt|srv|work|Users|Volumes)(?:/|$)"
                           r"|[A-Za-z]:[\\/]|~[\\/]|\\\\)")


def shipped_files(suffix):
    out = []
    for path in sorted(REPO.rglob(f"*{suffix}")):
        parts = path.relative_to(REPO).parts
        if any(p.startswith(".") or p in NOT_SHIPPED for p in parts[:-1]):
            continue
        out.append(path)
    return out


PY_FILES = shipped_files(".py")
OWN_TOP = {p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | \
          {p.stem for p in REPO.glob("*.py") if p.name != "__init__.py"}


def test_there_is_shipped_code():
    names = {p.relative_to(REPO).as_posix() for p in PY_FILES}
    assert "__init__.py" in names and any(n.startswith("nodes/") for n in names) and \
        any(n.startswith("ledits_core/") for n in names), names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)


def docstring_nodes(tree):
    """The Constant nodes that are docstrings (not checked for paths)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def problems_in(path):
    rel = path.relative_to(REPO).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    docs = docstring_nodes(tree)
    problems = []

    def add(node, text):
        problems.append(f"{rel}:{getattr(node, 'lineno', '?')}: {text}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in ("eval", "exec") and (isinstance(func, ast.Name) or
                                             getattr(func.value, "id", None) == "builtins"):
                add(node, f"{name}() (Registry rule: no eval/exec)")
            if isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "os" and \
                    name in ("system", "popen", "execv", "execvp", "spawnv", "spawnl"):
                add(node, f"os.{name}() runs programs")
            if name == "__import__":
                add(node, "__import__() (dynamic import)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                mod = alias.name
                if mod in NETWORK_MODULES or mod.split(".")[0] in {"socket", "requests", "httpx", "urllib3"}:
                    add(node, f"import {mod} (network access)")
                if mod.split(".")[0] in INSTALL_MODULES:
                    add(node, f"import {mod} (runtime installs / subprocesses)")
                check_absolute_import(mod, node, add)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                continue
            mod = node.module or ""
            full = {f"{mod}.{a.name}" for a in node.names} | {mod}
            if full & NETWORK_MODULES or mod.split(".")[0] in {"socket", "requests", "httpx", "urllib3"}:
                add(node, f"from {mod} import ... (network access)")
            if mod.split(".")[0] in INSTALL_MODULES:
                add(node, f"from {mod} import ... (runtime installs / subprocesses)")
            check_absolute_import(mod, node, add, [a.name for a in node.names])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if ABSOLUTE_PATH.match(node.value.strip()):
                add(node, f"absolute path {node.value!r}")
            if re.search(r"\bpip\s+install\b", node.value):
                add(node, "a 'pip install' command string")
    return problems


def check_absolute_import(mod, node, add, names=()):
    top = mod.split(".")[0]
    if top in OWN_TOP and top != "nodes":
        add(node, f"absolute self-import of {mod!r}: use a relative import (the folder name is chosen by Manager)")
    elif top == "nodes":
        own = {p.stem for p in (REPO / "nodes").glob("*.py")} - {"__init__"}
        if "." in mod or set(names) & own:
            add(node, f"absolute import of the pack's own {mod!r} (ComfyUI's `nodes` module would be found)")
    elif top not in sys.stdlib_module_names and top not in COMFY_SHIPS:
        add(node, f"import of {top!r}, which neither Python nor ComfyUI provides (not in requirements)")


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shipped_python_is_clean(path):
    problems = problems_in(path)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_what_it_should(tmp_path):
    bad = textwrap.dedent('''
        import subprocess, socket
        from urllib.request import urlopen
        from ledits_core import invert
        from nodes.edit_nodes import LEditsPPGuidedEdit
        import diffusers
        X = "/root/ComfyUI/models"
        eval("1")
        exec("x = 1")
        CMD = "pip install diffusers"
    ''')
    (tmp_path / "bad.py").write_text(bad)
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        found = problems_in(tmp_path / "bad.py")
    finally:
        REPO = saved
    text = "\n".join(found)
    for needle in ("subprocess", "socket", "network", "self-import", "nodes.edit_nodes", "diffusers",
                   "absolute path", "eval()", "exec()", "pip install"):
        assert needle in text, (needle, text)


def test_web_scripts_have_no_eval():
    for path in sorted((REPO / "web").rglob("*.js")) if (REPO / "web").exists() else []:
        text = path.read_text()
        assert not re.search(r"(?<![\w.])eval\s*\(|new\s+Function\s*\(", text), f"{path}: eval/new Function"


def run_probe(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_root_import_is_fast_and_does_nothing(capsys):
    """The root __init__ under an arbitrary package name: < 0.2 s, imports neither torch nor ComfyUI."""
    code = textwrap.dedent(f'''
        import importlib.util, sys, time
        import torch                                  # warm-up not counted (ComfyUI has it loaded)
        before = set(sys.modules)
        t = time.perf_counter()
        spec = importlib.util.spec_from_file_location("Some_Clone-Name", {str(REPO / "__init__.py")!r},
                                                      submodule_search_locations=[{str(REPO)!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        elapsed = time.perf_counter() - t
        new = sorted(m for m in set(sys.modules) - before if not m.startswith("Some_Clone-Name"))
        print(f"{{elapsed:.4f}}")
        print(",".join(new))
        print(callable(getattr(module, "comfy_entrypoint", None)), getattr(module, "WEB_DIRECTORY", None))
    ''')
    elapsed, new, entry = run_probe(code)[-3:]
    with capsys.disabled():
        print(f"\n[distribution] root __init__.py import: {float(elapsed) * 1000:.1f} ms (target < 200 ms); "
              f"new modules: {new or 'none'}")
    assert float(elapsed) < 0.2
    assert not [m for m in new.split(",") if m.split(".")[0] in ("comfy", "comfy_api", "nodes", "folder_paths")]
    assert entry.startswith("True")


def test_core_imports_under_any_folder_name():
    """Relative imports only: the math package imports when the pack folder has another name."""
    code = textwrap.dedent(f'''
        import importlib.util, sys
        name = "ComfyUI_ledits_pp-main"
        spec = importlib.util.spec_from_file_location(name, {str(REPO / "__init__.py")!r},
                                                      submodule_search_locations=[{str(REPO)!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        import importlib
        core = importlib.import_module(name + ".ledits_core")
        print(core.__name__, hasattr(core, "exact_sigmas"))
    ''')
    assert run_probe(code)[-1] == "ComfyUI_ledits_pp-main.ledits_core True"


REPO_PLACEHOLDER = "<owner>/<repository>"   # until the pack has a public repository (publish.yml refuses it)


def load_pyproject():
    import tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_pyproject_has_the_registry_keys():
    data = load_pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name) and not re.search(r"[._-]{2}", name)
    assert "comfyui" not in name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[-+.][0-9A-Za-z.]+)?", project["version"])
    assert project["description"] and "\n" not in project["description"]
    assert isinstance(project["license"], dict) and ({"file", "text"} & set(project["license"]))
    if "file" in project["license"]:
        assert (REPO / project["license"]["file"]).is_file()
    assert project["requires-python"].startswith(">=")
    assert project.get("dependencies") == []                 # torch etc. come with ComfyUI
    urls = project["urls"]                                   # the keys the Registry reads (comfy_config URLs)
    assert {"Repository", "Documentation", "Issues"} <= set(urls)
    placeholder = [key for key, url in urls.items() if REPO_PLACEHOLDER in url]
    assert placeholder in ([], list(urls)), f"replace {REPO_PLACEHOLDER} in every URL at once: {placeholder}"
    assert (REPO_PLACEHOLDER in comfy["Icon"]) == bool(placeholder), "Icon and URLs: one repository"
    for key in ("PublisherId", "DisplayName", "Icon", "requires-comfyui"):
        assert comfy.get(key), f"[tool.comfy] {key} missing"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert re.match(r"^(>=|>|==|~=)\s*\d+\.\d+", comfy["requires-comfyui"])
    icon = comfy["Icon"]
    assert icon.startswith("https://")
    repo_url = project["urls"]["Repository"].rstrip("/")
    raw = repo_url.replace("https://github.com/", "https://raw.githubusercontent.com/")
    if icon.startswith(raw + "/"):                           # served from this repository: the file exists
        path = icon[len(raw) + 1:].split("/", 1)[1]          # drop the branch
        assert (REPO / path).is_file(), f"Icon {icon} points at {path}, which is not in the repository"
    extras = project.get("optional-dependencies", {})
    assert "test" in extras and "bench" in extras
    assert any(d.startswith("comfyui-autograph") for d in extras["test"])
    assert "tool" in data and "pytest" in data["tool"] and "ini_options" in data["tool"]["pytest"]


def test_requirements_txt_has_nothing_comfyui_ships():
    path = REPO / "requirements.txt"
    if not path.exists():
        return
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[<>=!~;\[ ]", line, 1)[0].lower().replace("_", "-"))
    clash = sorted(set(names) & COMFY_REQUIREMENT_NAMES)
    assert not clash, f"requirements.txt lists packages ComfyUI already installs: {clash}"


def test_no_install_hooks_or_second_template_folder():
    """Manager runs install.py on install; a second example folder would be served under the same URL."""
    assert not (REPO / "install.py").exists()
    folders = [n for n in ("example_workflows", "example", "examples", "workflow", "workflows") if (REPO / n).is_dir()]
    assert folders == ["workflows"], folders
    assert not list((REPO / "workflows").glob("*api*.json")), "API-format copies belong in tests, not workflows/"
