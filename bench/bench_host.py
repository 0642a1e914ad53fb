"""ComfyUI in the benchmark's own process: path set-up, the pack loaded by ComfyUI's own loader,
and direct node calls. Shared by run_bench.py (SD1.5 vs diffusers) and run_bench_dit.py (DiTs)."""
import asyncio
import os
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def prepare(comfy_root, device):
    """Put ComfyUI first on sys.path (its `nodes` module must win over the pack's `nodes/` package:
    the repo root leaves sys.path, bench/ goes last), set CPU/attention flags before
    comfy.model_management is imported, and send everything the nodes write (previews, temp
    images) to a scratch folder, never into the ComfyUI tree. Returns the scratch folder."""
    comfy_root = pathlib.Path(comfy_root).resolve()
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() not in (REPO, REPO / "bench")]
    sys.path.insert(0, str(comfy_root))
    sys.path.append(str(REPO / "bench"))
    os.chdir(comfy_root)
    import comfy.cli_args
    comfy.cli_args.args.cpu = device == "cpu"
    comfy.cli_args.args.use_pytorch_cross_attention = True
    comfy.cli_args.args.disable_api_nodes = True
    import folder_paths
    scratch = tempfile.mkdtemp(prefix="ledits_bench_")
    for kind in ("temp", "output", "input"):
        os.makedirs(os.path.join(scratch, kind), exist_ok=True)
        getattr(folder_paths, f"set_{kind}_directory")(os.path.join(scratch, kind))
    return scratch


def init_comfy():
    """ComfyUI's core nodes plus this pack, loaded the way ComfyUI loads a custom node."""
    import nodes
    run = lambda c: asyncio.run(c) if asyncio.iscoroutine(c) else c
    run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    before = set(nodes.NODE_CLASS_MAPPINGS)
    assert run(nodes.load_custom_node(str(REPO), ignore=before)), "ComfyUI failed to load the pack"
    return nodes


def call(nodes, node_id, **inputs):
    """Execute one node directly (V3 classmethod or V1 method) and return its output tuple."""
    import torch
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    with torch.inference_mode():
        if hasattr(cls, "define_schema"):
            out = cls.execute(**inputs)
            return tuple(out.result if hasattr(out, "result") else out)
        out = getattr(cls(), cls.FUNCTION)(**inputs)
        return tuple(out["result"] if isinstance(out, dict) else out)
