"""In-process ComfyUI for the host tier (runs inside the host's own Python).

Sets ComfyUI up the way main.py would for a CPU run, loads this pack through ComfyUI's own
custom-node loader, registers the tiny test models, writes their checkpoints once per session,
and offers fixtures to run API-format prompts in-process. The HTTP server fixtures live in
server_fixtures.py.
"""
import asyncio
import importlib.util
import os
import pathlib
import sys
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
if not os.environ.get("COMFYUI_PATH"):
    raise pytest.UsageError("tests/host runs inside a ComfyUI host: set COMFYUI_PATH=<ComfyUI root> and "
                            "LEDITS_HOST_RUN=1 (or run plain `python -m pytest`, which does it per host)")
HOST = pathlib.Path(os.environ["COMFYUI_PATH"].split(":")[0]).resolve()
FIXTURE_DIR = pathlib.Path(__file__).resolve().parent / "fixture_node"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # for ledits_server_harness (prompt builders)

# The repo root must not shadow ComfyUI's top-level `nodes` module.
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != REPO]
sys.path.insert(0, str(HOST))
os.chdir(HOST)

import comfy.cli_args  # noqa: E402

comfy.cli_args.args.cpu = True
comfy.cli_args.args.use_pytorch_cross_attention = True
comfy.cli_args.args.disable_api_nodes = True

import comfy.model_management  # noqa: E402,F401
import utils.extra_config  # noqa: E402,F401  first, as main.py: nodes.py (via execution) puts comfy/ on sys.path,
#                                              where comfy/utils.py would shadow ComfyUI's `utils` package
import execution  # noqa: E402
import folder_paths  # noqa: E402
import nodes  # noqa: E402



def _load_fixture_models():
    spec = importlib.util.spec_from_file_location(
        "ledits_test_fixture", FIXTURE_DIR / "__init__.py", submodule_search_locations=[str(FIXTURE_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["ledits_test_fixture"] = module
    spec.loader.exec_module(module)
    return sys.modules["ledits_test_fixture.tiny_models"]


def _run(coro_or_value):
    return asyncio.run(coro_or_value) if asyncio.iscoroutine(coro_or_value) else coro_or_value


def _pack_module():
    """The package ComfyUI's loader made of this repo (pytest may hold a second copy)."""
    for name, module in list(sys.modules.items()):
        if name.endswith(".nodes.extension") and \
                pathlib.Path(getattr(module, "__file__", "") or "/").resolve() == REPO / "nodes" / "extension.py":
            return sys.modules[name[: -len(".nodes.extension")]]
    raise RuntimeError("ComfyUI did not load the pack's nodes")


class ServerStub:
    """What PromptExecutor needs from the server; records the events it sends."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.events = []

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data))

    def queue_updated(self):
        pass


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ledits_host")
    for name in ("checkpoints", "output", "input", "temp"):
        (root / name).mkdir()
    return root


@pytest.fixture(scope="session")
def comfy_host(session_dir):
    """ComfyUI initialised in-process with core extras, this pack and the tiny model classes."""
    folder_paths.set_output_directory(str(session_dir / "output"))
    folder_paths.set_input_directory(str(session_dir / "input"))
    folder_paths.set_temp_directory(str(session_dir / "temp"))
    folder_paths.add_model_folder_path("checkpoints", str(session_dir / "checkpoints"))
    tiny = _load_fixture_models()
    tiny.register()
    _run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    fixture = sys.modules["ledits_test_fixture"]       # its test-only loader node, as the server has it
    nodes.NODE_CLASS_MAPPINGS.update(fixture.NODE_CLASS_MAPPINGS)
    nodes.NODE_DISPLAY_NAME_MAPPINGS.update(fixture.NODE_DISPLAY_NAME_MAPPINGS)
    before = set(nodes.NODE_CLASS_MAPPINGS)
    ok = _run(nodes.load_custom_node(str(REPO), ignore=before))
    assert ok, "ComfyUI failed to load the pack (see the log above)"
    import comfyui_version
    return {"version": comfyui_version.__version__, "tiny": tiny, "pack": _pack_module(),
            "nodes": nodes, "execution": execution, "folder_paths": folder_paths,
            "model_management": comfy.model_management, "root": HOST, "session_dir": session_dir}


@pytest.fixture(scope="session")
def core(comfy_host):
    """The pack's own ledits_core (the copy its nodes use)."""
    return sys.modules[comfy_host["pack"].__name__ + ".ledits_core"]


@pytest.fixture(scope="session")
def tiny_ckpt(comfy_host, session_dir):
    """layout -> checkpoint file name (in the session's checkpoints folder), for every layout that
    loads from a file (tiny Flux is built in memory only: LeditsTestTinyModel)."""
    names = {}
    for layout in comfy_host["tiny"].FILE_LAYOUTS:
        name = f"tiny_{layout}.safetensors"
        comfy_host["tiny"].write_checkpoint(layout, session_dir / "checkpoints" / name, seed=0)
        names[layout] = name
    return names


@pytest.fixture(scope="session")
def node_class(comfy_host):
    def get(node_id):
        assert node_id in nodes.NODE_CLASS_MAPPINGS, f"{node_id} is not registered"
        return nodes.NODE_CLASS_MAPPINGS[node_id]
    return get


def call_node(cls, **inputs):
    """Execute a node class directly (V3 classmethod or V1 method) and return its output tuple."""
    import torch
    with torch.inference_mode():
        if hasattr(cls, "define_schema"):
            out = cls.execute(**inputs)
            return tuple(out.result if hasattr(out, "result") else out)
        out = getattr(cls(), cls.FUNCTION)(**inputs)
        return tuple(out["result"] if isinstance(out, dict) else out)


@pytest.fixture(scope="session")
def run_node(node_class):
    return lambda node_id, **inputs: call_node(node_class(node_id), **inputs)


@pytest.fixture(scope="session")
def load_tiny(tiny_ckpt, run_node):
    """layout -> (MODEL, CLIP, VAE) through CheckpointLoaderSimple (cached per layout)."""
    cache = {}

    def load(layout):
        if layout not in cache:
            cache[layout] = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ckpt[layout])[:3]
        return cache[layout]
    return load


@pytest.fixture(scope="session")
def executor(comfy_host):
    stub = ServerStub()
    import inspect
    cache_type = getattr(execution, "CacheType", None)
    kwargs = {"cache_type": cache_type.CLASSIC if cache_type else False}
    if "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters:  # 0.33+
        kwargs["cache_args"] = {"lru": 0, "ram": 0, "ram_inactive": 0}
    ex = execution.PromptExecutor(stub, **kwargs)
    return ex, stub


@pytest.fixture
def run_prompt(executor):
    """Validate and execute an API-format prompt in-process.

    Returns (outputs, status_messages); raises AssertionError with ComfyUI's error text when
    validation or execution fails (use expect_error=True to get the error message instead)."""
    ex, stub = executor

    def run(prompt, expect_error=False):
        prompt_id = str(uuid.uuid4())
        valid = _run(execution.validate_prompt(prompt_id, prompt, None))
        if not valid[0] or valid[3]:
            if expect_error:
                return None, valid
            raise AssertionError(f"prompt failed validation: {valid[1]} {valid[3]}")
        stub.events.clear()
        ex.execute(prompt, prompt_id, {"client_id": "ledits-tests"}, valid[2])
        messages = list(ex.status_messages)
        if not ex.success:
            errors = [data for event, data in messages if event == "execution_error"]
            if expect_error:
                return None, errors
            raise AssertionError(f"prompt failed: {errors}")
        return ex.history_result["outputs"], messages
    return run


def _load_server_fixtures():
    """server_fixtures.py under a unique module name (no clash with ComfyUI's top-level names)."""
    spec = importlib.util.spec_from_file_location("ledits_host_server_fixtures",
                                                  pathlib.Path(__file__).resolve().parent / "server_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# HTTP tier fixtures: comfy_server (a ComfyServer), post_prompt(api) -> history entry, interrupt().
_server_fixtures = _load_server_fixtures()
comfy_server = _server_fixtures.comfy_server
post_prompt = _server_fixtures.post_prompt
interrupt = _server_fixtures.interrupt


@pytest.fixture(scope="session")
def server(comfy_server):
    """Alias of comfy_server (one server process per session): request/queue/wait/run/output_file."""
    return comfy_server
