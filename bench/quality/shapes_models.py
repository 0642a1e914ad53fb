"""Tiny text-conditioned models of the shapes world, trained on one CPU thread and cached.

Each model is what world_families.build(layout, seed, config) makes (ComfyUI's own classes: the
SD1.5 UNet with a tiny CLIP-L, the SD3 MMDiT with tiny CLIP-L + CLIP-G, Flux.1 dev, Chroma (T5),
Z-Image (Qwen3), Flux.2 klein (Qwen3), Qwen-Image (Qwen2.5-VL), Lumina 2 (Gemma 2), WAN 2.1
(umT5), HiDream (CLIP-L, CLIP-G, T5, Llama); random text encoders), with the VAE of shapes_vae.py. The
denoiser trains, and with word_lr the text encoders' word tables with it (the rest of each encoder
stays frozen: see DEFAULTS). Training goes through the model's own `apply_model`
(ComfyUI's sigma -> timestep conversion and input scaling), eps for the UNet and rectified flow
for the DiTs, on latents computed analytically (shapes_vae.latent_of == VAE Encode).

Captions per training picture: the full caption (50 %), the objects only (15 %), one object's
phrase such as "red square" (15 %: what an edit concept encodes), the background phrase (5 %),
and the zero conditioning the pack uses when no `negative` is connected (15 %).

Trained checkpoints are cached in CACHE (override: LEDITS_QUALITY_CACHE), keyed by a hash of the
training config and world.py/vae.py; a file loads through CheckpointLoaderSimple once the tiny
classes are registered (tools/tiny_models.register()).
"""
import contextlib
import hashlib
import json
import math
import os
import pathlib
import time

import torch

import comfy.sd
import comfy.utils

import shapes_vae as vae_module
import shapes_world as world
from world_families import (IN_MEMORY, LATENT_CHANNELS, build, family_inputs, latent_format_of,  # noqa: F401
                            model_latent, pooled_extra, tiny_models, vae_of)

HERE = pathlib.Path(__file__).resolve().parent
CACHE = pathlib.Path(os.environ.get("LEDITS_QUALITY_CACHE", pathlib.Path.home() / ".cache" / "ledits_pp_quality"))
FLUX_GUIDANCE = (1.0, 5.0)              # tiny Flux dev trains on a random guidance input (no distillation)
REPEATED_PADS = ("flux2_klein",)        # tokenizer pads to 512 with one id: see Captions._encode_repeating_pads
# world: shapes_world variant; word_lr: learning rate of the text encoders' token tables (0: frozen);
# word_mixing: scale of the text encoders' self-attention outputs (0: a word stays at its token);
# weighting "x0": eps loss x sigma^2 (UNet); unet "small": SMALL_UNET. These are the recipes of the
# kept models (bench/quality/models/; SD3 then continues with "more": [1000, 0.001]). The second
# measurement's models: {"word_mixing": null, "steps": 500} (SD3) / {"steps": 400, "batch": 12,
# "word_mixing": null, "weighting": null, "unet": null} (the 8.6 M UNet).
DEFAULTS = {"sd15": {"steps": 2000, "batch": 12, "lr": 2e-3, "token_std": 1.0, "world": "simple", "word_lr": 1e-2,
                     "word_mixing": 0, "weighting": "x0", "unet": "small"},
            "sd3": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple", "word_lr": 1e-2,
                    "word_mixing": 0},
            "flux": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple", "word_lr": 1e-2,
                     "word_mixing": 0},
            "chroma": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple", "word_lr": 1e-2,
                       "word_mixing": 0, "hidden": 128},
            "zimage": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple", "word_lr": 1e-2,
                       "word_mixing": 0},
            "flux2_klein": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple",
                            "word_lr": 1e-2, "word_mixing": 0, "hidden": 128},
            "qwen_image": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple",
                           "word_lr": 1e-2, "word_mixing": 0},
            "lumina2": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple",
                        "word_lr": 1e-2, "word_mixing": 0, "hidden": 128},
            "wan21": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple",
                      "word_lr": 1e-2, "word_mixing": 0, "hidden": 128},
            "hidream": {"steps": 1000, "batch": 16, "lr": 2e-3, "token_std": 1.0, "world": "simple",
                        "word_lr": 1e-2, "word_mixing": 0, "hidden": 128},
            "vae4": {"steps": 60, "batch": 4, "lr": 5e-4},
            "vae16": {"steps": 60, "batch": 4, "lr": 5e-4},
            "vae128": {"steps": 60, "batch": 4, "lr": 5e-4}}


def config_key(kind, seed, **config):
    source = b"".join((HERE / f).read_bytes() for f in ("shapes_world.py", "shapes_vae.py"))
    text = json.dumps({"kind": kind, "seed": seed, **config}, sort_keys=True).encode()
    return hashlib.sha256(text + source).hexdigest()[:12]


# ----------------------------------------------------------------------------- VAE
def trained_vae(channels, seed=0, log=print, latent_format=None, **overrides):
    """comfy.sd.VAE of the world's TAESD (cached); info dict with PSNR before/after and time."""
    config = dict(DEFAULTS[f"vae{channels}"], **overrides)
    path = CACHE / f"vae{channels}_{config_key(f'vae{channels}', seed, **config)}.safetensors"
    info_path = path.with_suffix(".json")
    if path.exists():
        sd = comfy.utils.load_torch_file(str(path))
        return vae_of(sd, channels, latent_format), dict(json.loads(info_path.read_text()), cached=True)
    taesd = vae_module.build_taesd(channels, seed)
    before, after, seconds = vae_module.train_decoder(taesd, channels, seed=seed, log=log, **config)
    CACHE.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in taesd.state_dict().items()}
    comfy.utils.save_torch_file(sd, str(path))
    info = {"psnr_initial": before, "psnr_trained": after, "train_s": seconds, "bytes": path.stat().st_size,
            "config": config}
    info_path.write_text(json.dumps(info))
    return vae_of(sd, channels, latent_format), dict(info, cached=False)


class Captions:
    """Encodes captions with the model's frozen text encoder once each: (context, extra conds)."""

    def __init__(self, clip, layout, zero, repeat_pads=False):
        self.clip, self.layout, self.cache, self.tokens = clip, layout, {}, {}
        self.zero = zero                                   # the pack's zero conditioning
        self.repeat_pads = repeat_pads

    def encode(self, text):
        if text is None:
            return self.zero
        if text not in self.cache:
            with torch.no_grad():
                self.cache[text] = self._encode(self.clip.tokenize(text))
        return self.cache[text]

    def trained(self, text):
        """Like encode, but through the text encoder with gradients (the word table is being trained)."""
        if text is None:
            return self.zero
        if text not in self.tokens:
            self.tokens[text] = self.clip.tokenize(text)
        if self.repeat_pads:
            return self._encode_repeating_pads(self.tokens[text])
        return self._encode(self.tokens[text])

    def _encode_repeating_pads(self, tokens):
        """The encoding of a right-padded prompt from its words and one pad: with word_mixing 0 every
        position's encoding depends on its token alone, so each pad's is the same row (Flux.2
        klein's 512 tokens: equal to the full encoding to 0.0, and ~20x cheaper to train through)."""
        (key, batches), = tokens.items()
        ids = [int(t[0]) for t in batches[0]]
        real = max(i for i, t in enumerate(ids) if t != ids[-1]) + 1
        if len(batches) > 1 or real + 1 >= len(ids):
            return self._encode(tokens)
        context, extra = self._encode({key: [batches[0][:real + 1]]})
        pads = context[:, real:].expand(-1, len(ids) - real - 1, -1)
        return torch.cat([context, pads], 1), extra

    def _encode(self, tokens):
        out = self.clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)
        pooled = out.get("pooled_output")
        extra = pooled_extra(self.layout, None if pooled is None else pooled.float())
        if "conditioning_llama3" in out:                  # HiDream: its Llama layers' states
            extra["encoder_hidden_states_llama3"] = out["conditioning_llama3"].float()
        return out["cond"].float(), extra

    def denoised(self, model, x, sigma, texts, grad=False, per_sample=None):
        """The model's denoised prediction for x[i] under texts[i]. Texts whose encodings differ in
        length (an LLM encoder pads nothing: Z-Image) run as separate batches, as ComfyUI runs them.
        per_sample: {extra input: one value per item} (Flux's training guidance)."""
        encode = self.trained if grad else self.encode
        unique = {t: encode(t) for t in dict.fromkeys(texts)}         # each caption through the encoder once
        items = [unique[t] for t in texts]
        groups = {}
        for i, (context, extra) in enumerate(items):
            shapes = (context.shape[1],) + tuple(tuple(v.shape[1:]) for v in extra.values())
            groups.setdefault(shapes, []).append(i)
        parts, order = [], []
        for index in groups.values():
            context = torch.cat([items[i][0] for i in index])
            extra = {k: torch.cat([items[i][1][k] for i in index]) for k in items[index[0]][1]}
            extra.update(family_inputs(self.layout, context))
            for k, v in (per_sample or {}).items():
                extra[k] = v[index]
            parts.append(model.apply_model(x[index], sigma[index], c_crossattn=context, **extra))
            order += index
        return torch.cat(parts)[torch.argsort(torch.tensor(order))]


def training_caption(scene, g):
    u = float(torch.rand(1, generator=g))
    if u < 0.5:
        return scene.caption
    if u < 0.65:
        return world.caption(scene.objects)
    if u < 0.8:
        colour, shape = scene.objects[int(torch.randint(len(scene.objects), (1,), generator=g))]
        return world.object_phrase(colour, shape)
    if u < 0.85:
        return scene.background
    return None


# ----------------------------------------------------------------------------- model
def predict(model, captions, x, sigma, texts, grad=False, per_sample=None):
    """What the model predicts for (x - x0) / sigma: eps (VE / eps) or v = eps - x0 (flow)."""
    denoised = captions.denoised(model, x, sigma, texts, grad, per_sample)
    return (x - denoised) / per_item(sigma, x)


def noisy(model, x0, sigma, eps):
    return model.model_sampling.noise_scaling(per_item(sigma, x0), eps, x0)


def per_item(sigma, x):
    """sigma (B,) shaped to broadcast over x (4-D pictures, 5-D one-frame videos)."""
    return sigma.reshape(-1, *[1] * (x.ndim - 1))


def draw_sigma(model, layout, n, g):
    if layout == "sd15":                                  # uniform over the 1000 training timesteps
        return model.model_sampling.sigmas[torch.randint(0, 1000, (n,), generator=g)]
    s = torch.sigmoid(torch.randn(n, generator=g))        # logit-normal, then the model's shift (3)
    shift = model.model_sampling.shift
    return (shift * s / (1 + (shift - 1) * s)).clamp(1e-3, 1.0)


@contextlib.contextmanager
def input_copies(modules):
    """While training, each of `modules` gets a copy of its input. ComfyUI's CLIP and T5 layers and
    Flux's blocks add their residuals in place (x += f(norm(x))), which autograd refuses once the
    norm saved x."""
    hooks = [m.register_forward_pre_hook(lambda _m, args: (args[0].clone(),) + tuple(args[1:])) for m in modules]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@contextlib.contextmanager
def adds_without_out():
    """ComfyUI's Llama-family blocks (Qwen3) end in torch.add(residual, x, out=input), which
    autograd refuses; while the word tables train, torch.add returns a new tensor instead (the
    same values)."""
    original = torch.add

    def add(*args, out=None, **kwargs):
        return original(*args, **kwargs) if torch.is_grad_enabled() else original(*args, out=out, **kwargs)

    torch.add = add
    try:
        yield
    finally:
        torch.add = original


def text_norms(clip):
    """The text encoders' layer norms that precede an in-place residual add (CLIP, T5, Qwen3)."""
    names = ("layer_norm1", "layer_norm2", "layer_norm", "input_layernorm")
    return [m for name, m in clip.cond_stage_model.named_modules() if name.endswith(names)]


def denoiser_norms(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]


def word_tables(clip):
    """{encoder key as the tokenizer names it ('l', 'g', 't5xxl'): its token table parameter}."""
    return {name.split(".")[0].replace("clip_", ""): p for name, p in clip.cond_stage_model.named_parameters()
            if name.endswith(WORD_TABLES)}


WORD_TABLES = ("token_embedding.weight", "shared.weight", "embed_tokens.weight")     # CLIP, T5, Qwen3


@contextlib.contextmanager
def training_mode():
    """ComfyUI 0.33 runs Flux's rope through a kernel without a backward unless in_training is set."""
    import comfy.model_management as mm
    before = getattr(mm, "in_training", None)
    mm.in_training = True
    try:
        yield
    finally:
        if before is None:
            del mm.in_training
        else:
            mm.in_training = before


def train(patcher, captions, layout, steps, batch, lr, seed, log=print, world_variant="full", word_lr=0.0,
          weighting=None):
    """Trains the denoiser; with word_lr > 0 also the text encoders' token embedding tables (the
    rest of each text encoder stays frozen): the denoiser and the words learn to meet."""
    model = patcher.model
    net = model.diffusion_model
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.requires_grad_(True)
    groups = [{"params": list(net.parameters()), "base": lr}]
    if word_lr:
        words = list(word_tables(captions.clip).values())
        stored = [p.dtype for p in words]
        for p in words:                        # the CLIP keeps them in fp16: Adam needs float32
            p.data = p.data.float()
            p.requires_grad_(True)
        groups.append({"params": words, "base": word_lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    curve, t0 = [], time.perf_counter()
    net.train()
    copied = (text_norms(captions.clip) if word_lr else []) + (denoiser_norms(net) if layout in IN_MEMORY else [])
    with input_copies(copied), training_mode(), adds_without_out():
        _train_steps(model, captions, layout, steps, batch, opt, groups, g, world_variant, bool(word_lr), log, curve, t0,
                     weighting)
    net.eval()
    for p in list(net.parameters()) + list(word_tables(captions.clip).values()):
        p.requires_grad_(False)
    if word_lr:
        for p, dtype in zip(words, stored):
            p.data = p.data.to(dtype)
    captions.cache.clear()
    return curve, time.perf_counter() - t0


def loss_weight(layout, sigma, weighting):
    """Per-sample loss weight. "x0" (eps models only): the eps error times sigma^2 = the error of
    the predicted picture, capped at 16. An eps loss gives the words almost no weight at high
    sigma (their effect on eps shrinks as 1/sigma), where an edit decides what goes where."""
    if weighting != "x0" or layout != "sd15":
        return torch.ones_like(sigma)
    w = (sigma ** 2).clamp(1.0, 16.0)
    return w / w.mean()


def _train_steps(model, captions, layout, steps, batch, opt, groups, g, world_variant, grad_words, log, curve, t0,
                 weighting=None):
    run = 0.0
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = group["base"] * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        scenes = world.training_batch(batch, g, world_variant)
        x0 = model_latent(torch.stack([s.image for s in scenes]), layout)
        texts = [training_caption(s, g) for s in scenes]
        per_sample = None
        if layout == "flux":
            low, high = FLUX_GUIDANCE
            per_sample = {"guidance": low + (high - low) * torch.rand(batch, generator=g)}
        sigma = draw_sigma(model, layout, batch, g)
        eps = torch.randn(x0.shape, generator=g)
        x = noisy(model, x0, sigma, eps)
        err = (predict(model, captions, x, sigma, texts, grad_words, per_sample) - (x - x0) / per_item(sigma, x)) ** 2
        loss = (err.flatten(1).mean(1) * loss_weight(layout, sigma, weighting)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for group in groups for p in group["params"]], 1.0)
        opt.step()
        run += float(loss.detach())
        if step % 50 == 0 or step == steps:
            n = 50 if step % 50 == 0 else step % 50
            curve.append((step, run / n))
            log(f"  [{layout}] step {step:5d} loss {run / n:.4f} ({time.perf_counter() - t0:.0f} s)")
            run = 0.0


def zero_for(patcher, clip, layout):
    """What nodes/families zero_conditioning gives: zeros shaped like the encoded empty prompt
    (77 CLIP tokens; Flux: 256 T5 tokens; Z-Image: the 8-token bare chat template; HiDream: 128 T5
    and 128 Llama tokens), and zero extras (pooled vector, Llama states) where the family has them."""
    with torch.no_grad():
        context, extra = Captions(clip, layout, None)._encode(clip.tokenize(""))
    return torch.zeros_like(context), {k: torch.zeros_like(v) for k, v in extra.items()}


def local_words(clip, mixing):
    """Scale the frozen random CLIP's self-attention outputs by `mixing` (0: every position carries
    only its own token). With mixing, every pad position after "red square" carries the words too,
    and a tiny denoiser learns to read the prompt from the 70 pads instead of attending to the
    word's own position, so its attention never lands on the object. Big CLIPs mix as well, but a
    big model's cross-attention still finds the word; 0 gives the tiny model that behaviour."""
    if mixing is None or mixing == 1:
        return
    with torch.no_grad():
        for name, m in clip.cond_stage_model.named_modules():
            if name.endswith(("self_attn.out_proj", "SelfAttention.o", "self_attn.o_proj")):
                m.weight.mul_(mixing)
                if m.bias is not None:
                    m.bias.mul_(mixing)


def distinct_words(clip, token_std, seed):
    """Redraw the frozen random CLIP's token embeddings with std `token_std` per element. As
    tools/tiny_dit_models.fill draws them (std 1/sqrt(width) = 0.125), the layers' common output
    dominates: "a red square" and "a blue square" differ by cosine 0.85-0.97 at "red"/"blue", and
    a denoiser learns to read them only slowly. At std 1 the word itself dominates its position
    (cosine 0.14-0.24). Still random and frozen; the checkpoint carries these weights."""
    if not token_std:
        return
    g = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for name, p in clip.cond_stage_model.named_parameters():
            if name.endswith(WORD_TABLES):
                p.copy_(torch.randn(p.shape, generator=g) * token_std)


def load_trained(path, layout, seed, config):
    """(MODEL, CLIP) of a cached trained model: CheckpointLoaderSimple's loader, or for a tiny Flux
    (no file ComfyUI can detect) the model built from the seed with the saved weights put in."""
    if layout not in IN_MEMORY:
        return comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False)[:2]
    sd = comfy.utils.load_torch_file(str(path))
    patcher, clip, _ = build(layout, seed, config)
    patcher.model.diffusion_model.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("model.")})
    clip.cond_stage_model.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("clip.")}, strict=False)
    return patcher, clip


def trained_model(layout, seed=0, log=print, **overrides):
    """(MODEL, CLIP, VAE, info) of a trained tiny model: from the cache, or trained now and cached
    (the denoiser first: its data needs no VAE; then the VAE, which the checkpoint carries)."""
    tiny = tiny_models()
    tiny.register()
    config = dict(DEFAULTS[layout], **overrides)
    if config.get("more") is None:
        config.pop("more", None)
    key = config_key(layout, seed, vae=DEFAULTS[f"vae{LATENT_CHANNELS[layout]}"], **config)
    path = CACHE / f"{layout}_seed{seed}_{key}.safetensors"
    info_path = path.with_suffix(".json")
    latent_format = latent_format_of(layout)
    if path.exists():
        patcher, clip = load_trained(path, layout, seed, config)
        info = dict(json.loads(info_path.read_text()), cached=True)
        vae, info["vae"] = trained_vae(LATENT_CHANNELS[layout], log=log, latent_format=latent_format)
        return patcher, clip, vae, info
    more = config.pop("more", None)            # [steps, lr]: continue from the cached stage before;
    if more:                                   # [[steps, lr], [steps, lr], ...]: stages in a row
        earlier = None
        if isinstance(more[0], (list, tuple)):
            earlier = (more[:-1] if len(more) > 2 else more[0]) if len(more) > 1 else None
            more = more[-1]
        patcher, clip, _, before = trained_model(layout, seed, log=log, **dict(config, more=earlier))
        for p in patcher.model.diffusion_model.parameters():
            p.requires_grad_(True)
        config = dict(config, steps=more[0], lr=more[1])
    else:
        patcher, clip, _ = build(layout, seed, config)
        distinct_words(clip, config.get("token_std"), seed)
        local_words(clip, config.get("word_mixing"))
        before = {"curve": [], "train_s": 0.0}
    for p in clip.cond_stage_model.parameters():
        p.requires_grad_(False)
    captions = Captions(clip, layout, zero_for(patcher, clip, layout),
                        repeat_pads=layout in REPEATED_PADS and config.get("word_mixing") == 0)
    curve, seconds = train(patcher, captions, layout, seed=seed + 1 + len(before["curve"]), log=log,
                           world_variant=config.get("world", "full"), word_lr=config.get("word_lr", 0.0),
                           weighting=config.get("weighting"),
                           **{k: v for k, v in config.items() if k in ("steps", "batch", "lr")})
    curve, seconds = before["curve"] + curve, before["train_s"] + seconds
    vae, vae_info = trained_vae(LATENT_CHANNELS[layout], log=log, latent_format=latent_format)
    CACHE.mkdir(parents=True, exist_ok=True)
    if layout in IN_MEMORY:
        sd = {f"model.{k}": v for k, v in patcher.model.diffusion_model.state_dict().items()}
        sd.update({f"clip.{k}": v for k, v in clip.cond_stage_model.state_dict().items()})
        comfy.utils.save_torch_file({k: v.detach().contiguous() for k, v in sd.items()}, str(path))
    else:
        comfy.sd.save_checkpoint(str(path), patcher, clip, vae)
    info = {"curve": curve, "train_s": seconds, "bytes": path.stat().st_size, "config": dict(config, more=more),
            "parameters": sum(p.numel() for p in patcher.model.diffusion_model.parameters())}
    info_path.write_text(json.dumps(info))
    return patcher, clip, vae, dict(info, cached=False, vae=vae_info)
