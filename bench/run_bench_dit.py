"""LEDITS++ on a flow-matching DiT (issues #10, #16): the pack vs ComfyUI's own plain-sampler floor, in ONE process.

    COMFYUI_PATH=/root/ComfyUI /root/ComfyUI/.venv/bin/python bench/run_bench_dit.py --family sd35
    ... bench/run_bench_dit.py --family wan21 --steps 2 --repeat 3 --threads 2
    ... bench/run_bench_dit.py --family flux --size 512 --steps 10 --device cuda

The diffusion model has deterministic random weights of a real layout built from ComfyUI's own
classes (weights are irrelevant to the time and memory of the same rows); bench/dit_rows.py says,
per family, which layout (full, or a real-width slice with fewer blocks). The text encoders are the
tiny test ones (tools/tiny_families), so concept token positions are real. No VAE: the image is a
random latent, since VAE time is the same on both sides.

Phases, each timed with wall time, model calls/rows and activation memory (peak RSS minus RSS before):
pack Inversion (steps x 1 row) and Guided Edit (steps x (1 + concepts) rows, intersect masks:
attention capture at the family's `auto` blocks + noise masks + guidance), optionally the same edit
with `blocks all` and with noise masks only (no capture), and the floor: plain KSampler runs (euler,
cfg 1, so the row count is exact) with the same calls and rows. Pack and floor phases alternate
(A/B/A/B, the order flipped every repeat) so machine load hits both; the report gives medians and
the min-max spread of the per-repeat ratios.
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "bench"))
from dit_rows import ROWS  # noqa: E402

VARIANTS = {"auto": ("pack edit (intersect, auto blocks)", "auto", "intersect"),
            "all": ("pack edit (intersect, all blocks)", "all", "intersect"),
            "noise": ("pack edit (noise masks, no capture)", "auto", "noise")}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", "/root/ComfyUI").split(":")[0])
    p.add_argument("--family", default="sd35", choices=sorted(ROWS))
    p.add_argument("--size", type=int, default=0, help="square image size in pixels (default: the family's)")
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--frames", type=int, default=0, help="video frames (WAN; default: the family's)")
    p.add_argument("--steps", type=int, default=4, help="kept inversion/edit steps")
    p.add_argument("--concepts", type=int, default=3)
    p.add_argument("--variants", default="", help="edits to time, of auto,all,noise (default: all three for "
                                                  "sd35/flux, auto for the others)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=1, help="interleaved pack/floor repeats (median + spread)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--one-call-floor", action="store_true", help="where the host splits the edit's rows into "
                   "several calls, also time the floor with all rows in one call")
    p.add_argument("--json", default="", help="also write the summary to this file")
    args = p.parse_args()
    row = ROWS[args.family]
    args.width = args.width or args.size or row.size[0]
    args.height = args.height or args.size or row.size[1]
    args.frames = args.frames or row.frames
    args.variants = (args.variants or ("auto,all,noise" if args.family in ("sd35", "flux") else "auto")).split(",")
    return args


ARGS = parse_args()
from bench_host import call, init_comfy, prepare  # noqa: E402

SCRATCH = prepare(ARGS.comfyui, ARGS.device)

import torch  # noqa: E402
from bench_measure import Meter as _Meter, free, record, rss  # noqa: E402
from bench_report import machine, versions  # noqa: E402

if ARGS.threads:
    torch.set_num_threads(ARGS.threads)
CONCEPTS = [("glasses", False), ("a cat", True), ("snow", False), ("a red hat", False)]


def Meter(model):
    return _Meter([model.model.diffusion_model], ARGS.device)


def tiny_models():
    """tools/tiny_models.py by path (tools/ is no package), under the name the tests give it."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("ledits_tools_tiny_models", REPO / "tools" / "tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def time_capture():
    """Wrap `record` of the pack's capture requests (joint attention, call order, cross attention)
    with a timer: the seconds spent computing concept maps, a figure the machine's load hardly moves,
    unlike the difference of two wall times. Nested calls (a subclass calling its base) count once."""
    spent, depth = [0.0], [0]
    names = (".nodes.dit_capture", ".nodes.cross_capture", ".nodes.unet_capture")
    for name, module in list(sys.modules.items()):
        if not name.endswith(names) or pathlib.Path(getattr(module, "__file__", "/")).resolve().parent.parent != REPO:
            continue
        for cls in vars(module).values():
            if isinstance(cls, type) and cls.__module__ == module.__name__ and "record" in vars(cls):
                cls.record = _timed(cls.record, spent, depth)
    return spent


def _timed(record_, spent, depth):
    def timed(self, *args, **kwargs):
        depth[0] += 1
        started = time.perf_counter()
        try:
            return record_(self, *args, **kwargs)
        finally:
            depth[0] -= 1
            if not depth[0]:
                spent[0] += time.perf_counter() - started
    return timed


def concepts(nodes, clip, n, mask_type):
    chain = None
    for text, reverse in CONCEPTS[:n]:
        chain = call(nodes, "LEditsPPEditConcept", clip=clip, text=text, scale=5.0, threshold=0.9, reverse=reverse,
                     warmup=0, cooldown=10000, mask_type=mask_type, concepts=chain)[0]
    return chain


def latent(batch, width, height, seed=None):
    shape = ROWS[ARGS.family].latent_shape(batch, width, height, ARGS.frames)
    if seed is None:
        return {"samples": torch.zeros(shape)}
    return {"samples": torch.randn(shape, generator=torch.Generator().manual_seed(seed))}


def call_rows(model, fn):
    """Rows of each diffusion-model call `fn` makes (a 1-step edit: the host's batching of one step's
    conds; texts of different lengths go in separate calls on some families)."""
    seen = []
    hook = model.model.diffusion_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(int((args[0] if args else next(iter(kwargs.values()))).shape[0])),
        with_kwargs=True)
    try:
        fn()
    finally:
        hook.remove()
    return sorted(seen, reverse=True)


def summarize(runs, rows, clock="s"):
    """Medians of every phase and the per-repeat ratios pack / floor (median, min, max) of wall time
    (`s`) or of this process's CPU time (`cpu_s`: what other processes on a shared machine move least,
    as long as the threads are not left waiting; run with --threads 1 there)."""
    floor_of = {"pack inversion": "floor, 1 row"}
    floor_of.update({VARIANTS[v][0]: f"floor, {rows} rows" for v in ARGS.variants})
    out = {}
    for key in runs[0]:
        out[key] = {k: statistics.median(run[key][k] for run in runs) for k in ("s", "cpu_s", "act_gib", "peak_gib")}
        out[key].update(calls=runs[0][key]["calls"], rows=runs[0][key]["rows"])
    ratios = {pack: [run[pack][clock] / run[floor][clock] for run in runs] for pack, floor in floor_of.items()}
    edit = VARIANTS[ARGS.variants[0]][0]
    one_call = f"floor, {rows} rows in 1 call"
    if one_call in runs[0]:
        floor_of[f"{edit}, vs 1 call"] = one_call
        ratios[f"{edit}, vs 1 call"] = [run[edit][clock] / run[one_call][clock] for run in runs]
    ratios["inversion + edit"] = [(run["pack inversion"][clock] + run[edit][clock]) /
                                  (run["floor, 1 row"][clock] + run[f"floor, {rows} rows"][clock]) for run in runs]
    return out, floor_of, {k: (statistics.median(v), min(v), max(v)) for k, v in ratios.items()}


def main():
    started = time.perf_counter()
    nodes = init_comfy()
    base = rss()
    model, clip = ROWS[ARGS.family].build(tiny_models(), ARGS.device)
    import comfy.model_management
    comfy.model_management.load_models_gpu([model])
    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    frames = f" x {ARGS.frames} frames" if ARGS.frames > 1 else ""
    size = f"{ARGS.width}x{ARGS.height}{frames}"
    print(f"LEDITS++ DiT benchmark: {ARGS.family} = {ROWS[ARGS.family].layout}; {params / 1e9:.2f} B parameters "
          f"({params * 4 / 2**30:.1f} GiB fp32), RSS +{(rss() - base) / 2**30:.1f} GiB; {size}, {ARGS.steps} steps, "
          f"{ARGS.concepts} concepts, {ARGS.device}; {machine(ARGS.device)}; {versions()}", flush=True)
    empty = call(nodes, "CLIPTextEncode", clip=clip, text="")[0]
    image = latent(1, ARGS.width, ARGS.height, seed=1)
    chains = {m: concepts(nodes, clip, ARGS.concepts, m) for m in ("intersect", "noise")}
    captured = {"auto": model}
    if "all" in ARGS.variants:
        captured["all"] = call(nodes, "LEditsPPAttentionCapture", model=model, resolution="latent/4",
                               include_middle=False, blocks="all")[0]

    def invert(steps, latent_=image):
        return call(nodes, "LEditsPPInversion", model=model, latent=latent_, steps=steps, skip=0.15, seed=0,
                    schedule="exact", source_cfg=3.5, negative=empty)[0]

    def edit(variant, inversion):
        _, blocks, mask_type = VARIANTS[variant]
        return call(nodes, "LEditsPPGuidedEdit", model=captured[blocks], inversion=inversion,
                    concepts=chains[mask_type], cfg=7.5, guidance_rescale=0.0)

    def floor(rows, steps=ARGS.steps, width=ARGS.width, height=ARGS.height):
        return call(nodes, "KSampler", model=model, seed=0, steps=steps, cfg=1.0, sampler_name="euler",
                    scheduler="simple", positive=empty, negative=empty, latent_image=latent(rows, width, height),
                    denoise=1.0)[0]

    warm = invert(1, latent(1, 128, 128, seed=2))            # warm-up of every path, not timed
    split = call_rows(model, lambda: edit(ARGS.variants[0], warm))
    for variant in ARGS.variants[1:]:
        edit(variant, warm)
    floor(1, 1, 128, 128)
    del warm
    capture_s = time_capture()
    rows = 1 + ARGS.concepts
    runs, capture = [], {}

    def measure(label, what, fn):
        before, cpu = capture_s[0], time.process_time()
        with Meter(model) as m:
            out = fn()
        phases[label] = record("dit", f"{label} ({what})", m, cpu_s=time.process_time() - cpu)
        capture.setdefault(label, []).append(capture_s[0] - before)
        return out

    for repeat in range(max(1, ARGS.repeat)):
        phases = {}
        pack_first = repeat % 2 == 0
        inv_pair = [("pack inversion", f"{ARGS.steps} x 1 row", lambda: invert(ARGS.steps)),
                    ("floor, 1 row", f"{ARGS.steps} calls", lambda: floor(1))]
        inversion = None
        for label, what, fn in (inv_pair if pack_first else inv_pair[::-1]):
            out = measure(label, what, fn)
            inversion = out if label == "pack inversion" else inversion
        edits = [(VARIANTS[v][0], f"{ARGS.steps} x {rows} rows", lambda v=v: edit(v, inversion))
                 for v in ARGS.variants]
        edit_floor = (f"floor, {rows} rows", f"{ARGS.steps} x {'+'.join(map(str, split))} rows",
                      lambda: [floor(n) for n in split])
        if len(split) > 1 and ARGS.one_call_floor:   # the host's separate calls for texts of other lengths
            edits.append((f"floor, {rows} rows in 1 call", f"{ARGS.steps} x {rows} rows", lambda: floor(rows)))
        for label, what, fn in ([edits[0], edit_floor] + edits[1:] if pack_first else [edit_floor] + edits):
            measure(label, what, fn)
        runs.append(phases)
        del inversion
        free(ARGS.device)

    medians, floor_of, ratios = summarize(runs, rows)
    cpu_ratios = summarize(runs, rows, "cpu_s")[2]
    total = time.perf_counter() - started
    print(f"\n{ARGS.family}: {ROWS[ARGS.family].layout}; {params / 1e9:.2f} B parameters; {size}, {ARGS.steps} "
          f"steps, {ARGS.concepts} concepts; median of {len(runs)} interleaved repeats (total run {total:.0f} s)\n")
    print("| phase | pack | floor | pack / floor (min-max) | CPU time pack / floor (min-max) | "
          "activation pack / floor (GiB) | calls / rows |")
    print("|---|---|---|---|---|---|---|")
    for pack_key, floor_key in floor_of.items():
        p, f = medians[pack_key.replace(", vs 1 call", "")], medians[floor_key]
        r, c = ratios[pack_key], cpu_ratios[pack_key]
        print(f"| {pack_key} | {p['s']:.2f} s | {f['s']:.2f} s | {r[0]:.3f} ({r[1]:.3f}-{r[2]:.3f}) | "
              f"{c[0]:.3f} ({c[1]:.3f}-{c[2]:.3f}) | "
              f"{p['act_gib']:.2f} / {f['act_gib']:.2f} | {p['calls']} / {p['rows']} vs {f['calls']} / {f['rows']} |")
    r, c = ratios["inversion + edit"], cpu_ratios["inversion + edit"]
    print(f"| inversion + edit ({ARGS.variants[0]}) | | | {r[0]:.3f} ({r[1]:.3f}-{r[2]:.3f}) | "
          f"{c[0]:.3f} ({c[1]:.3f}-{c[2]:.3f}) | | |")
    capture_share = {}
    for label in (VARIANTS[v][0] for v in ARGS.variants):
        seconds = statistics.median(capture[label])
        if seconds:
            capture_share[label] = seconds / medians[label]["s"]
            print(f"time inside the capture, {label}: {seconds:.2f} s = {100 * capture_share[label]:.1f} % of that edit")
    if ARGS.json:
        pathlib.Path(ARGS.json).write_text(json.dumps({
            "family": ARGS.family, "layout": ROWS[ARGS.family].layout, "params": params, "size": size,
            "steps": ARGS.steps, "concepts": ARGS.concepts, "repeats": len(runs), "total_s": total,
            "peak_rss_gib": max(v["peak_gib"] for run in runs for v in run.values()),
            "medians": medians, "ratios": ratios, "cpu_ratios": cpu_ratios, "capture_share": capture_share, "runs": runs,
            "machine": machine(ARGS.device), "versions": versions()}, indent=1))
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
