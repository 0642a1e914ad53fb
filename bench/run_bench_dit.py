"""LEDITS++ on a flow-matching DiT (issue #10): the pack vs ComfyUI's own plain-sampler floor, in ONE process.

    COMFYUI_PATH=/root/ComfyUI /root/ComfyUI/.venv/bin/python bench/run_bench_dit.py --family sd35
    ... bench/run_bench_dit.py --family flux --size 512 --steps 10 --device cuda

The diffusion model has deterministic random weights of a real layout built from ComfyUI's own
classes (weights are irrelevant to the time and memory of the same rows):
* sd35: SD3.5-medium's full MMDiT (24 joint blocks, hidden 1536, 24 heads, RMS qk-norm, image-only
  attention in blocks 0-12, context 4096 -> 1536); only its pooled-vector input is narrowed to the
  tiny test CLIPs' width (a 128 x 1536 instead of 2048 x 1536 embedding layer);
* flux: Flux.1's block width (hidden 3072, 24 heads, rope axes 16/56/56, guidance input) with 3
  double + 6 single blocks instead of 19 + 38 (full Flux.1 is 12 B parameters, 48 GB in fp32, which
  does not fit a 24 GiB machine); text width is the tiny T5's (64).
The text encoders are the tiny test ones (tools/tiny_dit_models.py), so concept token positions are
real. No VAE: the image is a random latent, since VAE time is the same on both sides.

Phases, each timed with wall time, model calls/rows and activation memory (peak RSS minus RSS before):
pack Inversion (steps x 1 row) and Guided Edit (steps x (1 + concepts) rows, intersect masks: joint-
attention capture at the default blocks + noise masks + guidance), the same edit with `blocks all`
and with noise masks only (no capture), and the floor: plain KSampler runs (euler, cfg 1, so the row
count is exact) with the same calls and rows.
"""
import argparse
import os
import pathlib
import shutil
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", "/root/ComfyUI").split(":")[0])
    p.add_argument("--family", default="sd35", choices=["sd35", "flux"])
    p.add_argument("--size", type=int, default=256, help="image size in pixels (square; latent = size / 8)")
    p.add_argument("--steps", type=int, default=4, help="kept inversion/edit steps")
    p.add_argument("--concepts", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=1, help="repeat pack and floor phases, keep the fastest")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return p.parse_args()


ARGS = parse_args()
sys.path.append(str(REPO / "bench"))
from bench_host import call, init_comfy, prepare  # noqa: E402

SCRATCH = prepare(ARGS.comfyui, ARGS.device)

import torch  # noqa: E402
from bench_measure import Meter as _Meter, free, record, rss  # noqa: E402
from bench_report import machine, versions  # noqa: E402

if ARGS.threads:
    torch.set_num_threads(ARGS.threads)
CONCEPTS = [("glasses", False), ("a cat", True), ("snow", False), ("a red hat", False)]

SD35_MEDIUM = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": 24, "input_size": None,
               "context_embedder_config": {"target": "torch.nn.Linear",
                                           "params": {"in_features": 4096, "out_features": 1536}},
               "num_patches": 384 ** 2, "pos_embed_max_size": 384, "pos_embed_scaling_factor": None,
               "qk_norm": "rms", "x_block_self_attn_layers": list(range(13))}
FLUX_WIDTH = {"hidden_size": 3072, "num_heads": 24, "axes_dim": [16, 56, 56], "depth": 3, "depth_single_blocks": 6}


def Meter(model):
    return _Meter([model.model.diffusion_model], ARGS.device)


def tiny_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("ledits_tools_tiny_models", REPO / "tools" / "tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.dit


def build_model(dit):
    """(ModelPatcher, CLIP) of the benchmark layout: the tiny family's config class (tiny CLIPs)
    with the big diffusion-model config, random weights from a seeded generator."""
    layout = "sd35" if ARGS.family == "sd35" else "flux"
    unet = dict(dit.UNETS[layout])
    unet.update(dict(SD35_MEDIUM, adm_in_channels=dit.SD3_POOLED) if layout == "sd35" else FLUX_WIDTH)
    return dit.assemble(dit.CLASSES[layout], unet, seed=0, device=ARGS.device)[:2]


def time_capture():
    """Wrap the pack's JointCaptureRequest.record (the one the loaded nodes use) with a timer: the
    seconds spent computing concept maps, a figure the machine's load hardly moves, unlike the
    difference of two wall times."""
    spent = [0.0]
    module = next(m for name, m in sys.modules.items() if name.endswith(".nodes.dit_capture")
                  and pathlib.Path(getattr(m, "__file__", "/")).resolve().parent.parent == REPO)
    record = module.JointCaptureRequest.record

    def timed(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return record(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started
    module.JointCaptureRequest.record = timed
    return spent


def concepts(nodes, clip, n, mask_type):
    chain = None
    for text, reverse in CONCEPTS[:n]:
        chain = call(nodes, "LEditsPPEditConcept", clip=clip, text=text, scale=5.0, threshold=0.9, reverse=reverse,
                     warmup=0, cooldown=10000, mask_type=mask_type, concepts=chain)[0]
    return chain


def main():
    started = time.perf_counter()
    nodes = init_comfy()
    dit = tiny_module()
    base = rss()
    model, clip = build_model(dit)
    import comfy.model_management
    comfy.model_management.load_models_gpu([model])
    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    print(f"LEDITS++ DiT benchmark: {ARGS.family}, {params / 1e9:.2f} B parameters "
          f"({params * 4 / 2**30:.1f} GiB fp32), RSS +{(rss() - base) / 2**30:.1f} GiB; {ARGS.size}x{ARGS.size}, "
          f"{ARGS.steps} steps, {ARGS.concepts} concepts, {ARGS.device}; {machine(ARGS.device)}; {versions()}",
          flush=True)
    empty = call(nodes, "CLIPTextEncode", clip=clip, text="")[0]
    latent_hw = ARGS.size // 8
    image = {"samples": torch.randn(1, 16, latent_hw, latent_hw, generator=torch.Generator().manual_seed(1))}
    chains = {m: concepts(nodes, clip, ARGS.concepts, m) for m in ("intersect", "noise")}
    capture_all = call(nodes, "LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                       blocks="all")[0]

    def invert(steps, latent=image):
        return call(nodes, "LEditsPPInversion", model=model, latent=latent, steps=steps, skip=0.15, seed=0,
                    schedule="exact", source_cfg=3.5, negative=empty)[0]

    def edit(m, inversion, mask_type):
        return call(nodes, "LEditsPPGuidedEdit", model=m, inversion=inversion, concepts=chains[mask_type], cfg=7.5,
                    guidance_rescale=0.0)

    def floor(rows):
        latent = call(nodes, "EmptySD3LatentImage", width=ARGS.size, height=ARGS.size, batch_size=rows)[0]
        return call(nodes, "KSampler", model=model, seed=0, steps=ARGS.steps, cfg=1.0, sampler_name="euler",
                    scheduler="simple", positive=empty, negative=empty, latent_image=latent, denoise=1.0)[0]

    small = {"samples": torch.randn(1, 16, 8, 8)}            # warm-up of every path, not timed
    warm = invert(1, small)
    edit(model, warm, "intersect")
    edit(capture_all, warm, "intersect")
    capture_s = time_capture()
    best, capture = {}, {}
    rows = 1 + ARGS.concepts
    for _ in range(max(1, ARGS.repeat)):
        phases = {}
        with Meter(model) as m:
            inversion = invert(ARGS.steps)
        phases["pack inversion"] = record("dit", f"pack inversion ({ARGS.steps} x 1 row)", m)
        for label, m_, mask_type in (("pack edit (intersect, auto blocks)", model, "intersect"),
                                     ("pack edit (intersect, all blocks)", capture_all, "intersect"),
                                     ("pack edit (noise masks, no capture)", model, "noise")):
            before = capture_s[0]
            with Meter(model) as m:
                edit(m_, inversion, mask_type)
            phases[label] = record("dit", f"{label} ({ARGS.steps} x {rows} rows)", m)
            capture[label] = min(capture.get(label, float("inf")), capture_s[0] - before)
        for label, n in (("floor, 1 row", 1), (f"floor, {rows} rows", rows)):
            with Meter(model) as m:
                floor(n)
            phases[label] = record("dit", f"{label} ({ARGS.steps} calls)", m)
        for key, value in phases.items():
            if key not in best or value["s"] < best[key]["s"]:
                best[key] = value
        del inversion
        free(ARGS.device)

    print(f"\n{ARGS.family}: {ARGS.size}x{ARGS.size}, {ARGS.steps} steps, {ARGS.concepts} concepts "
          f"(total run {time.perf_counter() - started:.0f} s)\n")
    print("| phase | pack | floor | pack / floor | activation pack / floor (GiB) | calls / rows |")
    print("|---|---|---|---|---|---|")
    pairs = [("pack inversion", "floor, 1 row")] + [
        (label, f"floor, {rows} rows") for label in best if label.startswith("pack edit")]
    for pack_key, floor_key in pairs:
        p, f = best[pack_key], best[floor_key]
        print(f"| {pack_key} | {p['s']:.2f} s | {f['s']:.2f} s | {p['s'] / f['s']:.3f} | "
              f"{p['act_gib']:.2f} / {f['act_gib']:.2f} | {p['calls']} / {p['rows']} |")
    total_pack = best["pack inversion"]["s"] + best["pack edit (intersect, auto blocks)"]["s"]
    total_floor = best["floor, 1 row"]["s"] + best[f"floor, {rows} rows"]["s"]
    print(f"| inversion + edit (auto blocks) | {total_pack:.2f} s | {total_floor:.2f} s | "
          f"{total_pack / total_floor:.3f} | | |")
    for label, seconds in capture.items():
        if seconds:
            print(f"time inside the capture, {label}: {seconds:.2f} s = "
                  f"{100 * seconds / best[label]['s']:.1f} % of that edit")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
