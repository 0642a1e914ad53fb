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
import asyncio
import gc
import os
import pathlib
import platform
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", "/root/ComfyUI"))
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
    p.add_argument("--repeat", type=int, default=1,
                   help="repeat the pack and floor phases N times, interleaved, and keep each one's fastest run "
                        "(steadier ratios on a shared machine)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the pack's edit and the floor sampling of the same rows; print the top functions")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return p.parse_args()


ARGS = parse_args()
COMFY = pathlib.Path(ARGS.comfyui).resolve()
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() not in (REPO, REPO / "bench")]
sys.path.insert(0, str(COMFY))
os.chdir(COMFY)

import comfy.cli_args  # noqa: E402

comfy.cli_args.args.cpu = ARGS.device == "cpu"
comfy.cli_args.args.use_pytorch_cross_attention = True
comfy.cli_args.args.disable_api_nodes = True

import psutil  # noqa: E402
import torch  # noqa: E402

if ARGS.threads:
    torch.set_num_threads(ARGS.threads)

CONCEPTS = [("glasses", False), ("a cat", True), ("snow", False), ("a red hat", False), ("sunset", True),
            ("a dog", False), ("watercolor", False), ("a tree", True)]
PROC = psutil.Process()
ROWS = []          # result rows: (section, name, values dict)


# -- measurement ----------------------------------------------------------------------------------
def rss():
    return PROC.memory_info().rss


def free():
    gc.collect()
    if ARGS.device == "cuda":
        torch.cuda.empty_cache()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class Meter:
    """Wall time, peak RSS (sampled) / CUDA peak, UNet calls and rows of one phase."""

    def __init__(self, unet_modules):
        self.unets = unet_modules
        self.calls = self.rows = 0

    def _hook(self, module, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()))
        self.calls += 1
        self.rows += int(x.shape[0])

    def __enter__(self):
        free()
        self.handles = [u.register_forward_pre_hook(self._hook, with_kwargs=True) for u in self.unets]
        self.start_rss = self.peak = rss()
        self.stop = False
        if ARGS.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_cuda = torch.cuda.memory_allocated()

        def sample():
            while not self.stop:
                self.peak = max(self.peak, rss())
                time.sleep(0.005)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if ARGS.device == "cuda":
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, rss())
        for h in self.handles:
            h.remove()
        if ARGS.device == "cuda":
            self.peak_mem = torch.cuda.max_memory_allocated()
            self.act = self.peak_mem - self.start_cuda
        else:
            self.peak_mem = self.peak
            self.act = self.peak - self.start_rss
        return False

    def values(self):
        return {"s": self.seconds, "peak_gib": self.peak_mem / 2**30, "act_gib": self.act / 2**30,
                "calls": self.calls, "rows": self.rows}


def record(section, name, meter, **extra):
    values = dict(meter.values(), **extra)
    ROWS.append((section, name, values))
    print(f"  [{section}] {name}: {values['s']:.2f} s, peak {values['peak_gib']:.2f} GiB "
          f"(+{values['act_gib']:.2f}), UNet {values['calls']} calls / {values['rows']} rows", flush=True)
    return values


# -- weights --------------------------------------------------------------------------------------
UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
CLIP_CONFIG = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    algorithm_type="sde-dpmsolver++", solver_order=2, steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def fix_text_encoder_keys(folder):
    """transformers 5 saves CLIPTextModel keys without the `text_model.` prefix; SD1.5 folders (and
    ComfyUI's loader) use it. Both transformers versions load the prefixed form."""
    from safetensors.torch import load_file, save_file
    path = folder / "text_encoder" / "model.safetensors"
    sd = load_file(str(path))
    if all(k.startswith("text_model.") or k == "text_projection.weight" for k in sd):
        return
    save_file({(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()}, str(path),
              metadata={"format": "pt"})


def touch(modules):
    """Read every parameter once (pages of mmapped weights become resident); returns their bytes."""
    total = 0
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                t.sum()
                total += t.numel() * t.element_size()
    return total


def build_weights(folder, seed):
    """Random SD1.5-architecture weights (diffusers layout), built deterministically from `seed`."""
    marker = folder / f"seed_{seed}.done"
    if marker.exists():
        fix_text_encoder_keys(folder)
        return
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    UNet2DConditionModel(**UNET_CONFIG).save_pretrained(folder / "unet")
    free()
    torch.manual_seed(seed + 1)
    AutoencoderKL(**VAE_CONFIG).save_pretrained(folder / "vae")
    torch.manual_seed(seed + 2)
    CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)).save_pretrained(folder / "text_encoder")
    CLIPTokenizer.from_pretrained(str(COMFY / "comfy" / "sd1_tokenizer"), model_max_length=77).save_pretrained(folder / "tokenizer")
    DPMSolverMultistepScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items()
                                   if k not in ("clip_sample", "set_alpha_to_one")}).save_pretrained(folder / "scheduler")
    fix_text_encoder_keys(folder)
    marker.write_text("ok")
    free()
    print(f"built random SD1.5 weights in {folder} ({time.perf_counter() - t0:.1f} s)", flush=True)


def test_image(size):
    """A smooth deterministic RGB image in [0, 1], (size, size, 3)."""
    gen = torch.Generator().manual_seed(1234)
    low = torch.rand(1, 3, 8, 8, generator=gen)
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.rand(1, 3, size, size, generator=gen)
    return img.clamp(0, 1)[0].permute(1, 2, 0).contiguous()


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
    assert out.images[0].size == (size, size)
    del pipe, out
    free()
    return inv, edit, weights


# -- ComfyUI + the pack -----------------------------------------------------------------------------
def init_comfy():
    import nodes
    run = lambda c: asyncio.run(c) if asyncio.iscoroutine(c) else c
    run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    before = set(nodes.NODE_CLASS_MAPPINGS)
    assert run(nodes.load_custom_node(str(REPO), ignore=before)), "ComfyUI failed to load the pack"
    return nodes


def call(nodes, node_id, **inputs):
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    with torch.inference_mode():
        if hasattr(cls, "define_schema"):
            out = cls.execute(**inputs)
            return tuple(out.result if hasattr(out, "result") else out)
        out = getattr(cls(), cls.FUNCTION)(**inputs)
        return tuple(out["result"] if isinstance(out, dict) else out)


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

    def edit(self, inversion, n_concepts):
        out = call(self.nodes, "LEditsPPGuidedEdit", model=self.model, inversion=inversion,
                   concepts=self.concepts(n_concepts), cfg=7.5, guidance_rescale=0.0)
        return call(self.nodes, "VAEDecode", samples=out[0], vae=self.vae)[0]

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


# -- report -----------------------------------------------------------------------------------------
def versions():
    import importlib.metadata as md
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("diffusers", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "-"
    try:
        sys.path.insert(0, str(COMFY))
        import comfyui_version
        out["ComfyUI"] = comfyui_version.__version__
    except ImportError:
        out["ComfyUI"] = "?"
    return out


def machine():
    if ARGS.device == "cuda":
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, " \
           f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"


def main():
    folder = pathlib.Path(ARGS.weights_dir)
    size, steps, n = ARGS.size, ARGS.steps, 3
    started = time.perf_counter()
    print(f"LEDITS++ benchmark: {size}x{size}, {steps} steps, skip {ARGS.skip}, {n} concepts, fp32, "
          f"{ARGS.device}; {versions()}", flush=True)
    build_weights(folder, ARGS.seed)
    summary = {}

    if not ARGS.skip_diffusers:
        summary["d_inv"], summary["d_edit"], summary["d_weights"] = run_diffusers(folder, size, steps, n)

    nodes = init_comfy()
    pack = Pack(nodes, folder)
    summary["p_weights"] = pack.weights
    # a 1-step warm-up of every path (model load, first-call allocations), not timed
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
            with Meter([pack.unet]) as m:
                pack.edit(base_inv, c)
            e = record("scaling", f"pack edit {size}px, {s_steps} steps, {c} concepts", m)
            with Meter([pack.unet]) as m:
                pack.floor(size, s_steps, 1 + c)
            f = record("scaling", f"floor {size}px, {s_steps} x batch {1 + c}", m)
            scaling.append((f"{c} concepts, {size}px", e, f))
        del base_inv
        for sz in [int(x) for x in ARGS.scaling_sizes.split(",")]:
            free()
            i, e, inv_sz = run_pack(pack, sz, s_steps, n, "scaling", tag=f", {s_steps} steps")
            del inv_sz
            with Meter([pack.unet]) as m:
                pack.floor(sz, s_steps, 1 + n)
            f = record("scaling", f"floor {sz}px, {s_steps} x batch {1 + n}", m)
            scaling.append((f"{n} concepts, {sz}px", e, f, i))

    print_table(summary, scaling, size, steps, n, time.perf_counter() - started)


def print_table(s, scaling, size, steps, n, total):
    v = versions()
    print("\n" + "=" * 100)
    print(f"LEDITS++ benchmark, {time.strftime('%Y-%m-%d')}: {machine()}; " +
          ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"Random SD1.5-architecture weights (fp32), {size}x{size}, {steps} steps, skip {ARGS.skip}, "
          f"{n} concepts, intersect masks, device {ARGS.device}; total bench time {total:.0f} s\n")
    print("| phase | diffusers | pack | ComfyUI floor | pack / floor | diffusers / pack |")
    print("|---|---|---|---|---|---|")

    def fmt(x):
        return f"{x['s']:.2f} s, {x['calls']} calls / {x['rows']} rows" if x else "-"
    d_inv, d_edit = s.get("d_inv"), s.get("d_edit")
    p_inv, p_edit = s["p_inv"], s["p_edit"]
    # floor of the pack's phases: the same sampling rows, plus VAE encode (inversion) / decode (edit);
    # the encode+decode run is split half and half (both are in the floor row of the total)
    f_inv = dict(s["f_inv"], s=s["f_inv"]["s"] + s["f_vae"]["s"] / 2)
    f_edit = dict(s["f_edit"], s=s["f_edit"]["s"] + s["f_vae"]["s"] / 2)
    rows = [("inversion (incl. VAE encode)", d_inv, p_inv, f_inv), ("edit (incl. VAE decode)", d_edit, p_edit, f_edit)]
    tot = lambda *xs: None if any(x is None for x in xs) else \
        {"s": sum(x["s"] for x in xs), "calls": sum(x["calls"] for x in xs), "rows": sum(x["rows"] for x in xs)}
    rows.append(("inversion + edit", tot(d_inv, d_edit), tot(p_inv, p_edit), tot(f_inv, f_edit)))
    for name, d, p, f in rows:
        ratio_f = f"{p['s'] / f['s']:.3f}" if f else "-"
        ratio_d = f"**{d['s'] / p['s']:.2f}x**" if d else "-"
        print(f"| {name} | {fmt(d)} | {fmt(p)} | {fmt(f)} | {ratio_f} | {ratio_d} |")
    # memory
    print("\n| memory (GiB) | diffusers | pack | diffusers / pack |")
    print("|---|---|---|---|")
    if d_inv:
        print(f"| weights (parameter bytes) | {s['d_weights'] / 2**30:.2f} | {s['p_weights'] / 2**30:.2f} | |")
    for name, d, p in (("inversion: peak RSS", d_inv, p_inv), ("edit: peak RSS", d_edit, p_edit)):
        dp = f"{d['peak_gib']:.2f}" if d else "-"
        print(f"| {name} | {dp} | {p['peak_gib']:.2f} | |")
    for name, d, p in (("inversion: activation (peak - before)", d_inv, p_inv),
                       ("edit: activation (peak - before)", d_edit, p_edit)):
        dp = f"{d['act_gib']:.2f}" if d else "-"
        ratio = f"{d['act_gib'] / max(p['act_gib'], 1e-3):.1f}x" if d else "-"
        print(f"| {name} | {dp} | {p['act_gib']:.2f} | {ratio} |")
    # overhead of the pack's own work
    nodes_only = (p_inv["s"] + p_edit["s"]) / (s["f_inv"]["s"] + s["f_edit"]["s"] + s["f_vae"]["s"])
    edit_only = p_edit["s"] / (s["f_edit"]["s"] + s["f_vae"]["s"] / 2)
    print(f"\npack / floor end to end: {nodes_only:.3f} (edit alone {edit_only:.3f}); "
          f"UNet rows pack {p_inv['rows'] + p_edit['rows']} vs floor {s['f_inv']['rows'] + s['f_edit']['rows']}")
    if "p_inv_batched" in s:
        b = s["p_inv_batched"]
        print(f"batched inversion ({b['calls']} calls / {b['rows']} rows): {b['s']:.2f} s vs {p_inv['s']:.2f} s "
              f"one step per call -> gain {p_inv['s'] / b['s']:.2f}x; activation {b['act_gib']:.2f} vs "
              f"{p_inv['act_gib']:.2f} GiB; z difference {s['batched_zs_err']:.2g}")
    if scaling:
        print("\n| scaling | pack edit | floor | pack / floor | pack activation GiB |")
        print("|---|---|---|---|---|")
        for item in scaling:
            name, e, f = item[:3]
            print(f"| {name} | {e['s']:.2f} s ({e['rows']} rows) | {f['s']:.2f} s | {e['s'] / f['s']:.3f} | "
                  f"{e['act_gib']:.2f} |")
    print("=" * 100, flush=True)


if __name__ == "__main__":
    main()
