"""LEDITS++ edit in one command, headless, on a real ComfyUI (no server, no browser).

    COMFYUI_PATH=~/ComfyUI ~/ComfyUI/.venv/bin/python tools/ledits_edit.py \\
        --image photo.png --ckpt ~/ComfyUI/models/checkpoints/v1-5-pruned-emaonly.safetensors \\
        --add glasses --remove cat --out edited/

Runs the graph of workflows/ledits_edit_sd15.json (ledits_edit_sdxl.json for SDXL checkpoints):
Load Image -> VAE Encode -> LEDITS++ Inversion -> Edit Concepts -> Guided Edit -> VAE Decode, plus
the per-concept masks, inside ComfyUI's own executor, and writes edited.png and one mask PNG per
concept into --out. Without --ckpt (and without --image or concepts) it checks the install: in a
git clone on a tiny SD3 trained on pictures of coloured shapes (bench/quality/models/), removing the
red square of a held-out scene and saying from the pixels whether it is gone (tools/trained_demo.py);
where bench/ is absent (a Registry install) on a tiny random-weight model, whose output is noise.
Both take seconds and download nothing.

Several images, a folder, per-image concepts (--concepts-file) or running ComfyUI servers
(--server URL, repeatable) make a batch run (tools/batch_run.py): one folder per image under --out
and a results.jsonl; --resume finishes an interrupted batch.

Use the Python that runs ComfyUI (its venv). ComfyUI is found through --comfyui, COMFYUI_PATH, or
the ComfyUI folder this pack sits in (<ComfyUI>/custom_nodes/<pack>). Exit codes: 0 done,
1 the workflow failed, 2 bad arguments or environment (one line on stderr).
"""
import argparse
import importlib.util
import json
import os
import pathlib
import re
import shutil
import struct
import sys
import tempfile
import time

PACK = pathlib.Path(__file__).resolve().parents[1]
PROG = "ledits_edit"


class UsageError(Exception):
    """A problem with the arguments or the environment: one line, exit code 2."""


# ----------------------------------------------------------------------------------------------
# The workflow, in API format. Node ids and values are those of workflows/ledits_edit_sd15.json
# (and _sdxl.json); tests/host/test_ledits_edit_cli.py checks that this equals the converted file.

def edit_prompt(ckpt, image, adds=("glasses",), removes=("cat",), steps=30, skip=0.15, seed=0,
                add_scale=7.0, remove_scale=5.0, threshold=0.9, sdxl=False, prefix="ledits_edit"):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "5": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": ["3", 0], "steps": steps, "skip": skip, "seed": seed,
            "schedule": "exact", "source_cfg": 3.5, "batch_steps": 1, "flux_guidance": -1.0}},
        "8": {"class_type": "LEditsPPGuidedEdit", "inputs": {
            "model": ["1", 0], "inversion": ["5", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix}},
        "11": {"class_type": "MaskToImage", "inputs": {"mask": ["8", 1]}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
    }
    if not sdxl:     # SD1.x: empty-prompt unconditional; SDXL: zero conditioning (left unconnected)
        prompt["4"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}}
        prompt["5"]["inputs"]["negative"] = ["4", 0]
    concepts = [(t, False, add_scale) for t in adds] + [(t, True, remove_scale) for t in removes]
    previous = None
    for k, (text, reverse, scale) in enumerate(concepts):
        node = str(6 + k) if k < 2 else str(100 + k)
        prompt[node] = {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": text, "scale": scale, "threshold": threshold, "reverse": reverse,
            "warmup": 0, "cooldown": 10000, "mask_type": "intersect"}}
        if previous:
            prompt[node]["inputs"]["concepts"] = [previous, 0]
        previous = node
    if previous:
        prompt["8"]["inputs"]["concepts"] = [previous, 0]
    return prompt, concepts


# ----------------------------------------------------------------------------------------------
# Checks before ComfyUI is imported (fast, one clear line each).

def find_comfyui(explicit):
    candidates = []
    if explicit:
        candidates.append(("--comfyui", explicit))
    elif os.environ.get("COMFYUI_PATH"):
        candidates.append(("COMFYUI_PATH", os.environ["COMFYUI_PATH"].split(os.pathsep)[0]))
    else:
        # the pack's folder as given (a symlink in custom_nodes keeps that name) or as resolved
        for pack in (pathlib.Path(os.path.abspath(__file__)).parents[1], PACK):
            if pack.parent.name == "custom_nodes":
                candidates.append(("the ComfyUI folder around this pack", str(pack.parent.parent)))
                break
    if not candidates:
        raise UsageError("no ComfyUI found: set COMFYUI_PATH to your ComfyUI folder (the one with main.py) "
                         "or pass --comfyui PATH")
    source, path = candidates[0]
    root = pathlib.Path(path).expanduser().resolve()
    if not (root / "comfy" / "model_base.py").is_file() or not (root / "nodes.py").is_file():
        raise UsageError(f"no ComfyUI found at {root} (from {source}): expected the ComfyUI folder with "
                         "main.py, nodes.py and comfy/")
    return root


def check_image(path):
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("Pillow is not installed in this Python: run this with ComfyUI's own Python (its venv)")
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"cannot read image {path}: no such file")
    if path.suffix.lower() in tool_module("batch_inputs").VIDEO_SUFFIXES:
        raise UsageError(f"{path} {tool_module('batch_inputs').VIDEO_REFUSAL}")
    try:
        from PIL import ImageOps
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")       # as the camera held it
    except Exception as error:                      # PIL raises many kinds for broken files
        raise UsageError(f"cannot read image {path}: {type(error).__name__}: {error}".splitlines()[0])


def resolve_checkpoint(ckpt, comfy_root):
    path = pathlib.Path(ckpt).expanduser()
    if not path.is_file():
        in_models = comfy_root / "models" / "checkpoints" / ckpt
        if in_models.is_file():
            path = in_models
        else:
            raise UsageError(f"checkpoint not found: {ckpt} (give the path of a .safetensors/.ckpt file, or a "
                             f"file name in {comfy_root / 'models' / 'checkpoints'})")
    return path.resolve()


def looks_like_sdxl(path):
    """True when a .safetensors checkpoint has SDXL's second text encoder (reads the header only)."""
    if path.suffix != ".safetensors":
        return False
    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = f.read(min(size, 64 << 20)).decode("utf-8", "replace")
    except OSError:
        return False
    return "conditioner.embedders.1." in header


def fit_size(image, limit):
    """Resize so the long side is at most `limit` px and both sides are multiples of 8."""
    w, h = image.size
    factor = min(1.0, limit / max(w, h)) if limit else 1.0
    nw, nh = max(8, int(w * factor) // 8 * 8), max(8, int(h * factor) // 8 * 8)
    if (nw, nh) != (w, h):
        from PIL import Image
        image = image.resize((nw, nh), Image.LANCZOS)
    return image


def demo_image(size=(128, 96)):
    """A synthetic picture (gradient sky, sun, ground) for the no-argument install check."""
    from PIL import Image, ImageDraw
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        draw.line([(0, y), (w, y)], fill=(90 + y, 140 + y // 2, 230 - y))
    draw.rectangle([0, int(h * 0.7), w, h], fill=(70, 140, 60))
    draw.ellipse([int(w * 0.65), int(h * 0.1), int(w * 0.85), int(h * 0.1) + int(w * 0.2)], fill=(250, 220, 90))
    return img


def tool_module(name):
    """A sibling file of tools/ as a module (by path: this script is also imported by path, and
    tools/ must not sit on sys.path next to ComfyUI's modules)."""
    spec = importlib.util.spec_from_file_location(f"ledits_tools_{name}", PACK / "tools" / f"{name}.py")
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


headless = tool_module("comfy_headless")
trained_demo = tool_module("trained_demo")
WorkflowError = headless.WorkflowError


def tiny_models():
    """tools/tiny_models.py, with its tiny model classes registered in ComfyUI's detection list."""
    module = tool_module("tiny_models")
    module.register()
    return module


def tiny_model_threads():
    """One CPU thread for the tiny model: its tensors are too small to split, and on a busy 2-core
    machine two threads wait on each other (its inversion + edit measured 1 s vs 17-36 s)."""
    import torch
    torch.set_num_threads(1)


def tiny_checkpoint(work):
    """Writes the tiny random-weight SD1.5-layout checkpoint."""
    module = tiny_models()
    path = work / "checkpoints" / "ledits_tiny_random_sd15.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    module.write_checkpoint("sd15", path, seed=0)
    return path


def slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "concept"


def mask_name(index, text, reverse):
    """File stem of the mask of concept `index` (0-based), shared with the batch outputs."""
    return f"mask_{index + 1}_{'remove' if reverse else 'add'}_{slug(text)}"


def output_path(work, item):
    """Where ComfyUI wrote an output entry ({"filename", "subfolder", "type"}) under `work`."""
    return work / item.get("type", "output") / item.get("subfolder", "") / item["filename"]


def collect(outputs, work, out_dir, concepts, batch):
    """Copies the edited image(s) and the masks into out_dir with readable names."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def files(node):
        return [output_path(work, item) for item in outputs.get(node, {}).get("images", [])]

    written = []
    edited = files("10")
    for i, src in enumerate(edited):
        dst = out_dir / ("edited.png" if len(edited) == 1 else f"edited_{i + 1}.png")
        shutil.copyfile(src, dst)
        written.append(dst)
    for i, src in enumerate(files("12")):        # concept-major: c0 img0, c0 img1, c1 img0, ...
        c, b = divmod(i, batch)
        text, reverse, _ = concepts[c]
        name = mask_name(c, text, reverse) + (f"_{b + 1}" if batch > 1 else "")
        dst = out_dir / f"{name}.png"
        shutil.copyfile(src, dst)
        written.append(dst)
    return written


TINY_STEPS, TINY_SIZE = 4, 128     # the install check on the tiny random model: seconds, not minutes
RANDOM_MODEL = "tiny random model: the images are noise"


def run_defaults(args, demo, sdxl, trained=False):
    """(steps, size): what the user gave, else 128 px on a tiny model, in a few steps on the random
    one (the install check must take seconds on a busy CPU), else 30 steps at the checkpoint's
    native size (the trained tiny model runs 30 steps at 128 px in about a second)."""
    steps = args.steps if args.steps is not None else TINY_STEPS if demo and not trained else 30
    size = args.size if args.size is not None else TINY_SIZE if demo else 1024 if sdxl else 512
    return steps, size


def install_summary(nodes_module, image, steps, written, out_dir, seconds, model=RANDOM_MODEL):
    """One line saying what the tiny-model run checked, so a newcomer knows the install works."""
    import comfyui_version
    pack_nodes = [n for n in nodes_module.NODE_CLASS_MAPPINGS if n.startswith("LEditsPP")]
    return (f"{PROG}: install check OK: ComfyUI {comfyui_version.__version__} loaded the pack's {len(pack_nodes)} "
            f"nodes, inverted and edited a {image.size[0]}x{image.size[1]} image in {steps} steps and wrote "
            f"{len(written)} files to {out_dir} in {seconds:.1f} s ({model})")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="ledits_edit.py", description="LEDITS++ edit of one image, headless on a real ComfyUI "
        "(runs workflows/ledits_edit_sd15.json or _sdxl.json). Without --ckpt: the install check, on a "
        "trained tiny model in a git clone, else on a tiny random-weight model (its output is noise).")
    p.add_argument("--image", action="append", help="input image (PNG/JPEG/...), or a folder of them; repeatable "
                   "(a batch); default without --ckpt: a built-in test picture")
    p.add_argument("--ckpt", help="SD1.x/SD2.x/SDXL checkpoint: a file path or a file name in "
                                  "<ComfyUI>/models/checkpoints; default: the install check's tiny model")
    p.add_argument("--add", action="append", default=[], metavar="TEXT", help="concept to add (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="TEXT", help="concept to remove (repeatable)")
    p.add_argument("--out", default="ledits_out", help="output folder (default: ./ledits_out)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"inversion/edit steps (default 30; {TINY_STEPS} with the tiny random model)")
    p.add_argument("--skip", type=float, default=0.15, help="fraction of the noisiest steps skipped (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="inversion noise seed (default 0)")
    p.add_argument("--add-scale", type=float, default=7.0, help="edit scale of added concepts (default 7)")
    p.add_argument("--remove-scale", type=float, default=5.0, help="edit scale of removed concepts (default 5)")
    p.add_argument("--threshold", type=float, default=0.9, help="mask threshold, 0.9 edits ~10%% (default 0.9)")
    p.add_argument("--size", type=int, default=None,
                   help="resize so the long side is at most this many px (default 512 SD1.x, 1024 SDXL, "
                        f"{TINY_SIZE} with the tiny models; 0 = keep)")
    p.add_argument("--model", choices=["auto", "sd15", "sdxl"], default="auto",
                   help="which example workflow: auto (from the checkpoint), sd15 (SD1.x/SD2.x) or sdxl")
    p.add_argument("--comfyui", help="ComfyUI folder (default: $COMFYUI_PATH)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")
    p.add_argument("--print-prompt", action="store_true", help="print the API-format prompt and exit")
    p.add_argument("--tiny-classes", action="store_true",
                   help="(testing) also recognise the tiny random-weight checkpoints of tools/tiny_models.py")
    tool_module("batch_run").add_arguments(p)
    args = p.parse_args(argv)
    if args.steps is not None and not (1 <= args.steps <= 1000):
        p.error("--steps must be between 1 and 1000")
    return args


def main(argv=None):
    args = parse_args(argv)
    batch = tool_module("batch_run")
    if batch.wanted(args):
        return batch.main(args, sys.modules[__name__])
    args.image = args.image[0] if args.image else None
    started = time.monotonic()
    try:
        demo = args.ckpt is None
        root = find_comfyui(args.comfyui)
        trained = demo and not (args.image or args.add or args.remove) and trained_demo.available()
        if args.image:
            image = check_image(args.image)
        elif trained:
            scene = trained_demo.scene()
            image = trained_demo.picture(scene)
        elif demo:
            image = demo_image()
        else:
            raise UsageError("--image is required with --ckpt")
        ckpt_path = None if demo else resolve_checkpoint(args.ckpt, root)
        adds, removes = list(args.add), list(args.remove)
        if not adds and not removes:
            if not demo:
                raise UsageError("nothing to edit: give at least one --add TEXT or --remove TEXT")
            adds, removes = ([], [trained_demo.removal(scene)]) if trained else (["glasses"], ["cat"])
        if any(not t.strip() for t in adds + removes):
            raise UsageError("a concept text is empty")
        sdxl = args.model == "sdxl" or (args.model == "auto" and ckpt_path is not None and looks_like_sdxl(ckpt_path))
        sdxl = sdxl or trained       # SD3 takes the zero conditioning: the SDXL graph leaves negative unconnected
        steps, size = run_defaults(args, demo, sdxl, trained)
        image = fit_size(image, size)
        out_dir = pathlib.Path(args.out).expanduser().resolve()
        prompt, concepts = edit_prompt(ckpt_path.name if ckpt_path else trained_demo.CHECKPOINT if trained
                                       else "ledits_tiny_random_sd15.safetensors",
                                       "ledits_input.png", adds, removes, steps, args.skip, args.seed,
                                       args.add_scale, args.remove_scale, args.threshold, sdxl)
        if args.print_prompt:
            print(json.dumps(prompt, indent=1))
            return 0
        if demo:
            print(trained_demo.note(removes[0]) if trained else "NOTE: no --ckpt given: using a tiny built-in "
                  "RANDOM-WEIGHT model to check the install. Its output is noise, not an edit.", file=sys.stderr)
        print(f"{PROG}: ComfyUI at {root}; workflow {'ledits_edit_sdxl' if sdxl else 'ledits_edit_sd15'}; "
              f"image {image.size[0]}x{image.size[1]}; concepts: "
              + ", ".join(("-" if r else "+") + t for t, r, _ in concepts), file=sys.stderr)
        work = pathlib.Path(tempfile.mkdtemp(prefix="ledits_edit_"))
        try:
            (work / "input").mkdir()
            image.save(work / "input" / "ledits_input.png")
            nodes_module, folder_paths = headless.setup_comfyui(root, args.cpu, work, PACK)
            if demo or args.tiny_classes:
                tiny_models()
            if demo:
                tiny_model_threads()
                ckpt_path = trained_demo.checkpoint(work) if trained else tiny_checkpoint(work)
            folder_paths.add_model_folder_path("checkpoints", str(ckpt_path.parent))
            progress = headless.Progress(prompt)
            with headless.ctrl_c_interrupts():
                outputs = headless.execute(prompt, nodes_module, progress, PROG)
            written = collect(outputs, work, out_dir, concepts, batch=1)
            if trained:                                     # the picture before, next to the edit
                image.save(out_dir / "input.png")
                written.insert(0, out_dir / "input.png")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except WorkflowError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    for path in written:
        print(path)
    seconds = time.monotonic() - started
    model = trained_demo.LABEL if trained else RANDOM_MODEL
    print(install_summary(nodes_module, image, steps, written, out_dir, seconds, model) if demo else
          f"{PROG}: wrote {len(written)} files to {out_dir} in {seconds:.1f} s", file=sys.stderr)
    if trained:                                 # last: what a newcomer looks for
        print(f"{PROG}: " + trained_demo.verdict(scene, out_dir / "edited.png"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
