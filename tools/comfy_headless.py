"""Headless ComfyUI for tools/ledits_edit.py: import ComfyUI as main.py would, load the pack, run
one API prompt in ComfyUI's own executor with a progress bar on stderr. No server, no browser."""
import asyncio
import contextlib
import os
import pathlib
import signal
import sys
import types
import uuid


class Progress:
    def __init__(self, prompt, stream=sys.stderr):
        self.prompt, self.stream = prompt, stream
        self.total_nodes = len(prompt)
        self.done, self.node, self.label = 0, None, ""
        self.width = 28
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def titles(self, nodes_module):
        names = getattr(nodes_module, "NODE_DISPLAY_NAME_MAPPINGS", {})
        self.display = {nid: names.get(n["class_type"], n["class_type"]) for nid, n in self.prompt.items()}

    def node_started(self, node_id):
        if self.node is not None:
            self.done += 1
        self.node = node_id
        self.label = getattr(self, "display", {}).get(node_id, str(node_id))
        self.draw(0, 0)

    def step(self, value, total):
        self.draw(value, total)

    def draw(self, value, total):
        if not self.tty:                                # logs: one line per node, one when its steps end
            if total == 0 or value == total:
                self.stream.write(f"[{min(self.done + 1, self.total_nodes):>2}/{self.total_nodes}] {self.label}"
                                  + (f" {value}/{total} steps" if total else "") + "\n")
                self.stream.flush()
            return
        frac = value / total if total else 0.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        steps = f"{value}/{total}" if total else ""
        line = f"[{min(self.done + 1, self.total_nodes):>2}/{self.total_nodes}] {self.label[:26]:<26} |{bar}| {steps}"
        self.stream.write("\r" + line.ljust(80))
        self.stream.flush()

    def finish(self):
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


class ServerStub:
    """What ComfyUI's PromptExecutor needs from the server; forwards node starts to the progress bar."""

    def __init__(self, progress):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.progress = progress

    def send_sync(self, event, data, sid=None):
        if event == "executing" and isinstance(data, dict) and data.get("node") is not None:
            self.progress.node_started(str(data["node"]))

    def queue_updated(self):
        pass


def run_async(value):
    return asyncio.run(value) if asyncio.iscoroutine(value) else value


@contextlib.contextmanager
def serverless_node_replacements():
    """0.33's core nodes register node replacements with the running server while they load; a
    headless run has none, which made ComfyUI print "IMPORT FAILED: nodes_replacements.py ... pip
    install". They register into a manager of their own here (the server applies replacements to
    prompts it receives; our prompts are built from the pack's own workflow)."""
    try:
        import server
        from app.node_replace_manager import NodeReplaceManager
    except ImportError:          # 0.3.64: no node replacements
        yield
        return
    if hasattr(server.PromptServer, "instance"):
        yield
        return
    server.PromptServer.instance = types.SimpleNamespace(node_replace_manager=NodeReplaceManager())
    try:
        yield
    finally:
        del server.PromptServer.instance


def setup_comfyui(root, force_cpu, work, pack):
    """Import ComfyUI as main.py would for a headless run; load core extras and this pack."""
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() not in (pack, pack / "tools")]
    sys.path.insert(0, str(root))
    os.chdir(root)
    import torch
    import comfy.cli_args
    args = comfy.cli_args.args
    no_gpu = not torch.cuda.is_available() and not (getattr(torch.backends, "mps", None)
                                                    and torch.backends.mps.is_available())
    if force_cpu or no_gpu:
        args.cpu = True
        args.use_pytorch_cross_attention = True
    args.disable_api_nodes = True
    import comfy.model_management  # noqa: F401  (reads args)
    import folder_paths
    import utils.extra_config  # noqa: F401  as main.py does first: nodes.py puts comfy/ on sys.path, where
    #                            comfy/utils.py would shadow ComfyUI's `utils` package that server.py needs
    import nodes
    for kind in ("input", "output", "temp"):
        (work / kind).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(work / "input"))
    folder_paths.set_output_directory(str(work / "output"))
    folder_paths.set_temp_directory(str(work / "temp"))
    with serverless_node_replacements():
        run_async(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    before = set(nodes.NODE_CLASS_MAPPINGS)
    if not run_async(nodes.load_custom_node(str(pack), ignore=before)) or \
            "LEditsPPGuidedEdit" not in nodes.NODE_CLASS_MAPPINGS:
        raise RuntimeError(f"ComfyUI could not load the LEDITS++ pack from {pack} (see the log above)")
    return nodes, folder_paths


def new_executor(progress=None):
    """ComfyUI's PromptExecutor with the classic cache: one executor reused for several prompts
    (a batch) keeps the loaded checkpoint instead of loading it per image."""
    import inspect

    import execution
    cache_type = getattr(execution, "CacheType", None)
    kwargs = {"cache_type": cache_type.CLASSIC if cache_type else False}
    if "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters:   # 0.33+
        kwargs["cache_args"] = {"lru": 0, "ram": 0, "ram_inactive": 0}
    return execution.PromptExecutor(ServerStub(progress), **kwargs)


@contextlib.contextmanager
def ctrl_c_interrupts():
    """Ctrl-C raises ComfyUI's interrupt flag, which `execute` checks at every step, as the server's
    progress hook does (asyncio.run inside the executor would otherwise swallow SIGINT and the run
    would go on to its end); a second Ctrl-C stops at once. Yields a list that is non-empty once
    Ctrl-C was pressed; KeyboardInterrupt follows the block then."""
    import comfy.model_management as mm
    stopped = []

    def on_ctrl_c(signum, frame):
        if stopped:
            raise KeyboardInterrupt
        stopped.append(signum)
        mm.interrupt_current_processing(True)
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stopped
    except Exception:              # the run stopped because of the flag: report Ctrl-C, not its error
        if not stopped:
            raise
    finally:
        signal.signal(signal.SIGINT, previous)
        mm.interrupt_current_processing(False)
    if stopped:
        raise KeyboardInterrupt


def _step(progress, value, total):
    import comfy.model_management
    comfy.model_management.throw_exception_if_processing_interrupted()
    progress.step(value, total)


def execute(prompt, nodes_module, progress, client_id="ledits_edit", executor=None):
    import comfy.utils
    import execution
    executor = new_executor() if executor is None else executor
    executor.server.progress = progress
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview=None, prompt_id=None, node_id=None, **_: _step(progress, value, total))
    prompt_id = str(uuid.uuid4())
    valid = run_async(execution.validate_prompt(prompt_id, prompt, None))
    if not valid[0] or valid[3]:
        details = [f"{nid} {e.get('class_type')}: " + "; ".join(f"{x.get('message')} {x.get('details', '')}".strip()
                                                               for x in e.get("errors", []))
                   for nid, e in (valid[3] or {}).items()]
        message = (valid[1] or {}).get("message", "invalid workflow")
        raise WorkflowError(f"the workflow did not validate: {message} {' | '.join(details)}".strip())
    progress.titles(nodes_module)
    executor.execute(prompt, prompt_id, {"client_id": client_id}, valid[2])
    progress.finish()
    if not executor.success:
        errors = [data for event, data in executor.status_messages if event == "execution_error"]
        if errors:
            e = errors[0]
            raise WorkflowError(f"{e.get('node_type')} (node {e.get('node_id')}) failed: "
                                f"{e.get('exception_type', '').split('.')[-1]}: {e.get('exception_message', '').strip()}")
        raise WorkflowError("the workflow was interrupted")
    return executor.history_result["outputs"]


class WorkflowError(Exception):
    """The workflow failed inside ComfyUI: one line, exit code 1."""
