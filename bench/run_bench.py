"""LEDITS++ for ComfyUI benchmark (issue #6): the pack vs diffusers vs the ComfyUI floor, in ONE process.

    COMFYUI_PATH=/root/ComfyUI /root/ComfyUI/.venv/bin/python bench/run_bench.py            # 256 px, 10 steps
    ... bench/run_bench.py --size 512 --steps 50 --device cuda                              # full size, GPU

1. Deterministic random weights of the real SD1.5 architecture are built from config dicts with
   diffusers/transformers (no hub download; the CLIP tokenizer comes from ComfyUI's
   comfy/sd1_tokenizer) and saved once as a diffusers folder (--weights-dir, reused).
2. diffusers' LEditsPPPipelineStableDiffusion loads that folder: invert + edit (3 concepts,
   intersect masks), timed; then freed.
3. ComfyUI loads the same folder (comfy.diffusers_load, ComfyUI's own diffusers->SD conversion):
   the pack's nodes (VAE Encode + Inversion, Guided Edit + VAE Decode) on the same image, size,
   steps (diffusers' grid: schedule "diffusers"), skip, concepts; then the ComfyUI floor: plain
   KSampler runs with exactly the same UNet rows per call (cfg 1 so no extra uncond rows).
4. Batched inversion (batch_steps) and scaling (concepts 1-2-4-8, size 256-512).

Every phase reports wall time, UNet calls/rows (forward pre-hooks on both UNets) and peak RSS
sampled every 5 ms (activation = peak minus the RSS before the phase, i.e. above the weights).
Needs the `bench` extra (diffusers, transformers, psutil) in ComfyUI's Python.
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
    p.add_argument("--size", type=int, default=256, help="image size in pixels (square)")
    p.add_argument("--steps", type=int, default=10, help="kept inversion/edit steps (after skip)")
    p.add_argument("--skip", type=float, default=0.15)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights-dir", default="/tmp/ledits_bench_sd15_random",
                   help="diffusers folder of the random SD1.5 weights (built once, reused)")
    p.add_argument("--skip-diffusers", action="store_true")
    p.add_argument("--batch-steps", type=int, default=0,
                   help="batched inversion: steps per model call (0 = all steps in one call; -1 = skip)")
    p.add_argument("--scaling-steps", type=int, default=3, help="steps of the scaling runs (0 = skip scaling)")
    p.add_argument("--scaling-concepts", default="1,2,4,8")
    p.add_argument("--scaling-sizes", default="256,512")
    p.add_argument("--precision", default="bf16,fp16",
                   help="UNet weight+compute dtypes for the reconstruction/stability rows ('' = skip)")
    p.add_argument("--precision-size", type=int, default=64, help="image size of the precision rows")
    p.add_argument("--repeat", type=int, default=1,
                   help="repeat the pack and floor phases N times, interleaved, and keep each one's fastest run "
                        "(steadier ratios on a shared machine)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the pack's edit and the floor sampling of the same rows; print the top functions")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return p.parse_args()


ARGS = parse_args()
COMFY = pathlib.Path(ARGS.comfyui).resolve()
sys.path.append(str(REPO / "bench"))
from bench_host import call, init_comfy, prepare  # noqa: E402

SCRATCH = prepare(COMFY, ARGS.device)

import torch  # noqa: E402
from bench_measure import ROWS, Meter as _Meter, free as _free, record, rss  # noqa: E402
from bench_report import print_table, versions  # noqa: E402
from bench_weights import build_weights, test_image, touch  # noqa: E402

if ARGS.threads:
    torch.set_num_threads(ARGS.threads)

CONCEPTS = [("glasses", False), ("a cat", True), ("snow", False), ("a red hat", False), ("sunset", True),
            ("a dog", False), ("watercolor", False), ("a tree", True)]


def Meter(unets):
    return _Meter(unets, ARGS.device)


def free():
    _free(ARGS.device)


# -- diffusers --------------------------------------------------------------------------------------
def run_diffusers(folder, size, steps, n_concepts):
    from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, LEditsPPPipelineStableDiffusion,
                           UNet2DConditionModel)
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer
    base = rss()
    pipe = LEditsPPPipelineStableDiffusion(
        vae=AutoencoderKL.from_pretrained(folder / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer", model_max_length=77),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet"),
        scheduler=DPMSolverMultistepScheduler.from_pretrained(folder / "scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False).to(ARGS.device)
    pipe.set_progress_bar_config(disable=True)
    weights = touch([pipe.unet, pipe.vae, pipe.text_encoder])
    print(f"  diffusers loaded the folder: {weights / 2**30:.2f} GiB of weights, RSS +{(rss() - base) / 2**30:.2f} GiB",
          flush=True)
    image = Image.fromarray((test_image(size) * 255).round().to(torch.uint8).numpy())
    concepts = CONCEPTS[:n_concepts]
    with torch.no_grad():
        with Meter([pipe.unet]) as m:
            pipe.invert(image=image, source_prompt="", num_inversion_steps=steps, skip=ARGS.skip,
                        generator=torch.Generator(ARGS.device).manual_seed(ARGS.seed), height=size, width=size)
        inv = record("vs diffusers", f"diffusers inversion {size}px", m)
        with Meter([pipe.unet]) as m:
            out = pipe(editing_prompt=[c for c, _ in concepts], reverse_editing_direction=[r for _, r in concepts],
                       edit_guidance_scale=[5.0] * len(concepts), edit_threshold=[0.9] * len(concepts),
                       edit_warmup_steps=[0] * len(concepts), use_cross_attn_mask=True, use_intersect_mask=True,
                       generator=torch.Generator(ARGS.device).manual_seed(ARGS.seed), output_type="pil")
        edit = record("vs diffusers", f"diffusers edit {size}px ({n_concepts} concepts)", m)
        unet_alone = diffusers_unet_alone(pipe.unet, size, steps, 1 + n_concepts)
    assert out.images[0].size == (size, size)
    del pipe, out
    free()
    return inv, edit, weights, unet_alone


def diffusers_unet_alone(unet, size, steps, rows):
    """diffusers' UNet by itself with its default SDPA attention, the edit's calls and rows: the
    pipeline's own floor, and its UNet's speed next to ComfyUI's on this machine."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    unet.set_attn_processor(AttnProcessor2_0())
    gen = torch.Generator().manual_seed(ARGS.seed)
    x = torch.randn(rows, 4, size // 8, size // 8, generator=gen).to(ARGS.device)
    context = torch.randn(rows, 77, 768, generator=gen).to(ARGS.device)
    with Meter([unet]) as m:
        for step in range(steps):
            unet(x, 900 - 80 * step, encoder_hidden_states=context)
    return record("vs diffusers", f"diffusers UNet alone (SDPA) {size}px, {steps} x batch {rows}", m)


# -- ComfyUI + the pack -----------------------------------------------------------------------------
class Pack:
    def __init__(self, nodes, folder):
        import comfy.diffusers_load
        self.nodes = nodes
        base = rss()
        self.model, self.clip, self.vae = comfy.diffusers_load.load_diffusers(str(folder))
        import comfy.model_management
        comfy.model_management.load_models_gpu([self.model])
        self.weights = touch([self.model.model, self.clip.cond_stage_model, self.vae.first_stage_model])
        print(f"  ComfyUI loaded the same folder: {self.weights / 2**30:.2f} GiB of weights, "
              f"RSS +{(rss() - base) / 2**30:.2f} GiB", flush=True)
        self.unet = self.model.model.diffusion_model
        self.empty = call(nodes, "CLIPTextEncode", clip=self.clip, text="")[0]
        self._concepts = {}

    def concepts(self, n):
        if n not in self._concepts:
            chain = None
            for text, reverse in CONCEPTS[:n]:
                chain = call(self.nodes, "LEditsPPEditConcept", clip=self.clip, text=text, scale=5.0, threshold=0.9,
                             reverse=reverse, warmup=0, cooldown=10000, mask_type="intersect",
                             concepts=chain)[0]
            self._concepts[n] = chain
        return self._concepts[n]

    def invert(self, size, steps, batch_steps=1):
        pixels = test_image(size)[None]
        latent = call(self.nodes, "VAEEncode", pixels=pixels, vae=self.vae)[0]
        return call(self.nodes, "LEditsPPInversion", model=self.model, latent=latent, steps=steps, skip=ARGS.skip,
                    seed=ARGS.seed, schedule="diffusers", source_cfg=3.5, batch_steps=batch_steps,
                    negative=self.empty)

    def edit(self, inversion, n_concepts, decode=True):
        out = call(self.nodes, "LEditsPPGuidedEdit", model=self.model, inversion=inversion,
                   concepts=self.concepts(n_concepts), cfg=7.5, guidance_rescale=0.0)
        return call(self.nodes, "VAEDecode", samples=out[0], vae=self.vae)[0] if decode else out[0]

    def floor(self, size, steps, rows):
        """A plain ComfyUI sampling run with `rows` UNet rows per call (cfg 1: no uncond rows)."""
        latent = call(self.nodes, "EmptyLatentImage", width=size, height=size, batch_size=rows)[0]
        return call(self.nodes, "KSampler", model=self.model, seed=ARGS.seed, steps=steps, cfg=1.0,
                    sampler_name="euler", scheduler="normal", positive=self.empty, negative=self.empty,
                    latent_image=latent, denoise=1.0)[0]

    def encode_decode(self, size):
        latent = call(self.nodes, "VAEEncode", pixels=test_image(size)[None], vae=self.vae)[0]
        return call(self.nodes, "VAEDecode", samples=latent, vae=self.vae)[0]


def run_pack(pack, size, steps, n_concepts, section, tag=""):
    with Meter([pack.unet]) as m:
        inversion = pack.invert(size, steps)
    inv = record(section, f"pack inversion {size}px{tag} (VAE encode + Inversion)", m)
    pack.concepts(n_concepts)       # CLIP text encoding, timed once by itself in main()
    with Meter([pack.unet]) as m:
        pack.edit(inversion[0], n_concepts)
    edit = record(section, f"pack edit {size}px{tag} ({n_concepts} concepts, Guided Edit + VAE decode)", m)
    return inv, edit, inversion


def run_floor(pack, size, steps, n_concepts, section):
    with Meter([pack.unet]) as m:
        pack.encode_decode(size)
    vae = record(section, f"floor VAE encode + decode {size}px", m)
    with Meter([pack.unet]) as m:
        pack.floor(size, steps, 1)
    inv = record(section, f"floor sampling {size}px, {steps} x batch 1", m)
    with Meter([pack.unet]) as m:
        pack.floor(size, steps, 1 + n_concepts)
    edit = record(section, f"floor sampling {size}px, {steps} x batch {1 + n_concepts}", m)
    return vae, inv, edit


def profile(pack, inversion, size, steps, n):
    import cProfile
    import io
    import pstats
    for name, fn in (("pack edit", lambda: pack.edit(inversion, n)),
                     ("floor sampling", lambda: pack.floor(size, steps, 1 + n)),
                     ("pack inversion", lambda: pack.invert(size, steps))):
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
        print(f"\n--- profile: {name} (by own time) ---\n" + "\n".join(out.getvalue().splitlines()[6:]), flush=True)


def run_precision(pack, folder):
    """fp16/bf16 UNet (weights and compute in that dtype, what a GPU runs; on CPU ComfyUI would
    otherwise up-cast to fp32): exact-schedule reconstruction error, and whether a 3-concept edit
    stays finite and how far it lands from the fp32 edit."""
    import comfy.sd
    size, steps = ARGS.precision_size, ARGS.steps
    latent = call(pack.nodes, "VAEEncode", pixels=test_image(size)[None], vae=pack.vae)[0]
    unet_file = next((folder / "unet").glob("diffusion_pytorch_model*.safetensors"))

    def invert_and_edit(model):
        inversion = call(pack.nodes, "LEditsPPInversion", model=model, latent=latent, steps=steps, skip=ARGS.skip,
                         seed=ARGS.seed, schedule="exact", source_cfg=3.5, batch_steps=1, negative=pack.empty)[0]
        recon = call(pack.nodes, "LEditsPPGuidedEdit", model=model, inversion=inversion, cfg=7.5,
                     guidance_rescale=0.0)[0]["samples"]
        edit = call(pack.nodes, "LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=pack.concepts(3),
                    cfg=7.5, guidance_rescale=0.0)[0]["samples"]
        return recon, edit

    reference = invert_and_edit(pack.model)[1]
    rows = []
    for name in [x.strip() for x in ARGS.precision.split(",") if x.strip()]:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]
        model = comfy.sd.load_diffusion_model(str(unet_file), model_options={"dtype": dtype})
        model.model.manual_cast_dtype = None          # compute in `dtype` too
        t0 = time.perf_counter()
        recon, edit = invert_and_edit(model)
        seconds = time.perf_counter() - t0
        diff = (edit - reference).abs()
        rows.append({"dtype": name, "compute": str(model.model.get_dtype()).replace("torch.", ""),
                     "recon": (recon - latent["samples"]).abs().max().item(),
                     "nonfinite": int((~torch.isfinite(edit)).sum()), "vs_fp32_mean": diff.mean().item(),
                     "vs_fp32_max": diff.max().item(), "s": seconds})
        print(f"  [precision] {rows[-1]}", flush=True)
        del model
        free()
    return rows


def main():
    folder = pathlib.Path(ARGS.weights_dir)
    size, steps, n = ARGS.size, ARGS.steps, 3
    started = time.perf_counter()
    print(f"LEDITS++ benchmark: {size}x{size}, {steps} steps, skip {ARGS.skip}, {n} concepts, fp32, "
          f"{ARGS.device}; {versions()}", flush=True)
    build_weights(folder, ARGS.seed, COMFY / "comfy" / "sd1_tokenizer")
    summary = {}

    if not ARGS.skip_diffusers:
        summary["d_inv"], summary["d_edit"], summary["d_weights"], summary["d_unet"] = \
            run_diffusers(folder, size, steps, n)

    nodes = init_comfy()
    pack = Pack(nodes, folder)
    summary["p_weights"] = pack.weights
    with Meter([pack.unet]) as m:
        pack.concepts(n)
    summary["p_text"] = record("text", f"pack: {n} concept texts (CLIP encode, Edit Concept nodes)", m)
    # a 1-step warm-up of every path (first-call allocations), not timed
    _, _, warm = run_pack(pack, 64, 1, 1, "warm-up")
    ROWS[:] = [r for r in ROWS if r[0] != "warm-up"]
    del warm
    for rep in range(max(1, ARGS.repeat)):
        runs = dict(zip(("p_inv", "p_edit", "inversion"), run_pack(pack, size, steps, n, "vs diffusers")))
        runs.update(zip(("f_vae", "f_inv", "f_edit"), run_floor(pack, size, steps, n, "floor")))
        inversion = runs.pop("inversion")
        for key, val in runs.items():
            if key not in summary or val["s"] < summary[key]["s"]:
                summary[key] = val
    if ARGS.profile:
        profile(pack, inversion[0], size, steps, n)

    if ARGS.batch_steps >= 0:
        bs = ARGS.batch_steps or steps
        with Meter([pack.unet]) as m:
            batched = pack.invert(size, steps, batch_steps=bs)
        summary["p_inv_batched"] = record("batched inversion", f"pack inversion, batch_steps {bs}", m)
        err = (batched[0].zs - inversion[0].zs).abs().max().item()
        summary["batched_zs_err"] = err
        del batched

    scaling = []
    if ARGS.scaling_steps:
        s_steps = ARGS.scaling_steps
        base_inv = pack.invert(size, s_steps)[0]
        for c in [int(x) for x in ARGS.scaling_concepts.split(",")]:
            pack.concepts(c)
            with Meter([pack.unet]) as m:
                pack.edit(base_inv, c, decode=False)
            e = record("scaling", f"pack Guided Edit {size}px, {s_steps} steps, {c} concepts", m)
            with Meter([pack.unet]) as m:
                pack.floor(size, s_steps, 1 + c)
            f = record("scaling", f"floor {size}px, {s_steps} x batch {1 + c}", m)
            scaling.append((f"{c} concepts, {size}px", e, f))
        del base_inv
        for sz in [int(x) for x in ARGS.scaling_sizes.split(",")]:
            free()
            inv_sz = pack.invert(sz, s_steps)[0]
            with Meter([pack.unet]) as m:
                pack.edit(inv_sz, n, decode=False)
            e = record("scaling", f"pack Guided Edit {sz}px, {s_steps} steps, {n} concepts", m)
            del inv_sz
            with Meter([pack.unet]) as m:
                pack.floor(sz, s_steps, 1 + n)
            f = record("scaling", f"floor {sz}px, {s_steps} x batch {1 + n}", m)
            scaling.append((f"{n} concepts, {sz}px", e, f))

    precision = run_precision(pack, folder) if ARGS.precision else []
    print_table(ARGS, summary, scaling, precision, n, time.perf_counter() - started)
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
