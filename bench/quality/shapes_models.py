"""Tiny text-conditioned models of the shapes world, trained on one CPU thread and cached.

Each model is what tools/tiny_models.build(layout, seed) makes (ComfyUI's own classes: the SD1.5
UNet with a tiny CLIP-L, the SD3 MMDiT with tiny CLIP-L + CLIP-G, Flux.1 dev, Chroma (T5) and
Z-Image (Qwen3); real tokenizers; random text encoders), with the VAE of shapes_vae.py. The
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
import importlib.util
import io
import json
import math
import os
import pathlib
import sys
import time

import torch

import comfy.model_patcher
import comfy.sd
import comfy.supported_models_base
import comfy.text_encoders.wan
import comfy.utils

import shapes_vae as vae_module
import shapes_world as world

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = pathlib.Path(os.environ.get("LEDITS_QUALITY_CACHE", pathlib.Path.home() / ".cache" / "ledits_pp_quality"))
LATENT_CHANNELS = {"sd15": 4, "sd3": 16, "flux": 16, "zimage": 16, "chroma": 16, "flux2_klein": 128, "qwen_image": 16,
                   "lumina2": 16, "wan21": 16}
FLUX_LATENT = (0.3611, 0.1159)          # Flux.1's latent format (Z-Image's, Chroma's): its TAESD gets these as vae_scale / vae_shift
FLUX_GUIDANCE = (1.0, 5.0)              # tiny Flux dev trains on a random guidance input (no distillation)
IN_MEMORY = ("flux", "zimage", "chroma", "flux2_klein", "qwen_image", "lumina2", "wan21")          # ComfyUI's detection assumes full-size heads: no checkpoint file
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
            "vae4": {"steps": 60, "batch": 4, "lr": 5e-4},
            "vae16": {"steps": 60, "batch": 4, "lr": 5e-4},
            "vae128": {"steps": 60, "batch": 4, "lr": 5e-4}}


def tiny_models():
    """tools/tiny_models.py by path (tools/ is no package), loaded once."""
    import sys
    name = "ledits_tools_tiny_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "tiny_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# A smaller SD1.5-layout UNet (3 levels, 1 res block each, cross-attention at every level) that
# CheckpointLoaderSimple still detects as the tiny SD1.5 (same width, context and heads).
SMALL_UNET = {"channel_mult": [1, 2, 2], "num_res_blocks": [1, 1, 1], "transformer_depth": [1, 1, 1],
              "transformer_depth_output": [1, 1, 1, 1, 1, 1]}


def build(layout, seed, config):
    """(ModelPatcher, CLIP, VAE) before training: tools/tiny_models.build, or with "unet": "small"
    the smaller UNet, or with "hidden": N a Chroma N wide (the pack's tiny Chroma, 64 wide with
    0.3 M parameters, did not learn the world's words in 1000 steps: colours in generated pictures
    0.67 vs 0.65 by chance), from one seeded generator the same way."""
    tiny = tiny_models()
    tiny.register()
    dit = sys.modules["ledits_tools_tiny_dit_models"]
    if config.get("unet") == "small":
        return dit.assemble(tiny.CLASSES[layout], dict(tiny.UNETS[layout], **SMALL_UNET), seed, latent_channels=4)
    if layout == "chroma" and config.get("hidden"):
        chroma = sys.modules["ledits_tools_tiny_families_chroma"]
        width = config["hidden"]
        unet = dict(chroma.chroma_config(), hidden_size=width, out_dim=width, axes_dim=[16, 24, 24])
        return dit.assemble(chroma.TinyChroma, unet, seed, latent_channels=16)
    if layout == "flux2_klein" and config.get("hidden"):
        flux2 = sys.modules["ledits_tools_tiny_families_flux2"]
        heads = 2
        unet = dict(flux2.flux2_config(False), hidden_size=config["hidden"], axes_dim=[config["hidden"] // heads // 4] * 4)
        return dit.assemble(flux2._config_class("klein"), unet, seed, latent_channels=16)
    if layout == "lumina2" and config.get("hidden"):
        return world_lumina2(config["hidden"], seed)
    if layout == "wan21" and config.get("hidden"):
        return world_wan21(config["hidden"], seed)
    return tiny.build(layout, seed)


def world_sentences():
    """Every one-object caption of the full world: what a stand-in tokenizer must learn to spell."""
    words = world.VARIANTS["full"]
    return [world.caption([(c, s)], b) for c in words["colours"] for s in words["shapes"] for b in words["backgrounds"]]


def world_wan21(width, seed):
    """WAN 2.1 text-to-video `width` wide (2 heads) on one-frame videos, its stand-in umT5
    tokenizer trained with the world's words as well (tools/tiny_families/wan.py's knows a few test
    sentences only)."""
    import sentencepiece
    wan = sys.modules["ledits_tools_tiny_families_wan"]
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter((list(wan._CORPUS) + world_sentences()) * 4), model_writer=out, vocab_size=160,
        model_type="bpe", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, num_threads=1, minloglevel=2)

    class UMT5(comfy.text_encoders.wan.WanT5Model):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, model_options={
                **model_options, "umt5xxl_model_config": dict(wan.UMT5, vocab_size=192)})

    class WorldWAN21(wan.TinyWAN21):
        def clip_target(self, state_dict={}):
            return comfy.supported_models_base.ClipTarget(comfy.text_encoders.wan.WanT5Tokenizer, UMT5)
    generator = torch.Generator().manual_seed(seed)
    model = WorldWAN21(dict(wan.UNETS["wan21"], dim=width, ffn_dim=2 * width, dtype=torch.float32)).get_model({})
    wan.fill(model.diffusion_model, generator)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    clip = comfy.sd.CLIP(WorldWAN21({}).clip_target(), embedding_directory=None,
                         tokenizer_data={"spiece_model": out.getvalue()})
    wan.fill(clip.cond_stage_model, generator)
    return patcher, clip, None


def world_lumina2(width, seed):
    """Lumina 2 `width` wide (2 heads) whose stand-in Gemma tokenizer also learned the world's words:
    the pack's tiny one (tools/tiny_families/lumina2.py) knows a few test sentences and spells
    "square" in pieces that other words share."""
    import sentencepiece
    lumina = sys.modules["ledits_tools_tiny_families_lumina2"]
    if not _WORLD_SPIECE:
        out = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter((list(lumina._CORPUS) + world_sentences()) * 4), model_writer=out, vocab_size=160,
            model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3, num_threads=1, minloglevel=2)
        _WORLD_SPIECE.append(out.getvalue())

    class Tokenizer(lumina.TinyLuminaTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            super().__init__(embedding_directory, dict(tokenizer_data, spiece_model=_WORLD_SPIECE[0]))

    class WorldLumina2(lumina.TinyLumina2):
        unet_config = {"image_model": "lumina2", "dim": width}

        def clip_target(self, state_dict={}):
            return comfy.supported_models_base.ClipTarget(Tokenizer, lumina.TinyLuminaTE)
    unet = dict(lumina.UNETS["lumina2"], dim=width, axes_dims=[width // 8, 3 * width // 16, 3 * width // 16])
    return sys.modules["ledits_tools_tiny_dit_models"].assemble(WorldLumina2, lumina._accepted(unet), seed)


_WORLD_SPIECE = []


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


def vae_of(sd, channels, latent_format=None):
    """comfy.sd.VAE of a world TAESD state dict, as VAELoader loads it (taef2: by its metadata).
    latent_format "wan21": a per-channel (vae_scale, vae_shift) and one-frame video latents."""
    metadata = {"tae_latent_channels": 128} if channels == 128 else None
    if latent_format != "wan21":
        return comfy.sd.VAE(sd=with_latent_format(sd, latent_format), metadata=metadata)
    return one_frame_vae(per_channel_vae(comfy.sd.VAE(sd=sd)))


def latent_format_of(layout):
    """(vae_scale, vae_shift) the layout's TAESD needs other than its channel count's default,
    or "wan21" (Qwen-Image: WAN 2.1's per-channel latent)."""
    if layout in ("qwen_image", "wan21"):
        return "wan21"
    return FLUX_LATENT if layout in ("flux", "zimage", "chroma", "lumina2") else None


def with_latent_format(sd, latent_format):
    """The TAESD state dict with another family's (vae_scale, vae_shift), so that the MODEL still
    sees exactly the encoder output."""
    if latent_format is None:
        return sd
    return dict(sd, vae_scale=torch.tensor(latent_format[0]), vae_shift=torch.tensor(latent_format[1]))


def per_channel_vae(vae):
    """WAN 2.1's latent format (Qwen-Image's) normalises each channel: model input = (raw - mean) x
    scale / std. The TAESD gets those as per-channel vae_scale / vae_shift, so that the MODEL
    still sees exactly the encoder output."""
    import comfy.latent_formats
    wan = comfy.latent_formats.Wan21()
    taesd = vae.first_stage_model
    taesd.vae_scale = torch.nn.Parameter((wan.scale_factor / wan.latents_std).reshape(1, -1, 1, 1), requires_grad=False)
    taesd.vae_shift = torch.nn.Parameter(wan.latents_mean.reshape(1, -1, 1, 1).clone(), requires_grad=False)
    return vae


def one_frame_vae(vae):
    """A picture's latent as WAN 2.1's VAE gives it: (B, C, 1, h, w), and back for decoding. The
    world's VAE stays the TAESD; only the time axis is added."""
    encode, decode = vae.encode, vae.decode
    vae.encode = lambda pixels, *a, **k: encode(pixels, *a, **k).unsqueeze(2)
    vae.decode = lambda samples, *a, **k: decode(samples[:, :, 0] if samples.ndim == 5 else samples, *a, **k)
    return vae


# ----------------------------------------------------------------------------- text
class Captions:
    """Encodes captions with the model's frozen text encoder once each: (context, extra conds)."""

    def __init__(self, clip, layout, zero):
        self.clip, self.layout, self.cache, self.tokens = clip, layout, {}, {}
        self.zero = zero                                   # the pack's zero conditioning

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
        return self._encode(self.tokens[text])

    def _encode(self, tokens):
        cond, pooled = self.clip.encode_from_tokens(tokens, return_pooled=True)
        return cond.float(), pooled_extra(self.layout, None if pooled is None else pooled.float())

    def denoised(self, model, x, sigma, texts, grad=False, per_sample=None):
        """The model's denoised prediction for x[i] under texts[i]. Texts whose encodings differ in
        length (an LLM encoder pads nothing: Z-Image) run as separate batches, as ComfyUI runs them.
        per_sample: {extra input: one value per item} (Flux's training guidance)."""
        encode = self.trained if grad else self.encode
        unique = {t: encode(t) for t in dict.fromkeys(texts)}         # each caption through the encoder once
        items = [unique[t] for t in texts]
        groups = {}
        for i, (context, _) in enumerate(items):
            groups.setdefault(context.shape[1], []).append(i)
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


def family_inputs(layout, context):
    """Inputs the sampler gives the model besides the text: Flux dev's distilled guidance (3.5, as
    sampling sets it; Chroma always 0), NextDiT's count of text tokens."""
    if layout in ("flux", "chroma"):
        return {"guidance": torch.full((context.shape[0],), 3.5 if layout == "flux" else 0.0)}
    if layout in ("zimage", "lumina2"):
        return {"num_tokens": context.shape[1]}
    return {}


def pooled_extra(layout, pooled):
    return {"y": pooled} if layout in ("sd3", "flux") else {}


def zero_conditioning(layout, context_shape, pooled_width):
    """What nodes/families zero_conditioning gives: zeros shaped like the encoded empty prompt
    (77 CLIP tokens; Flux: 256 T5 tokens; Z-Image: the 8-token bare chat template) (+ zero pooled
    where the family has one)."""
    pooled = None if pooled_width is None else torch.zeros(1, pooled_width)
    return torch.zeros(1, *context_shape), pooled_extra(layout, pooled)


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


def model_latent(images, layout):
    """What VAE Encode gives the model for (B, 3, H, W) pictures, computed analytically: the
    encoder output, with a time axis where the family's latents are videos (Qwen-Image)."""
    latent = vae_module.latent_of(images, LATENT_CHANNELS[layout])
    return latent.unsqueeze(2) if latent_format_of(layout) == "wan21" else latent


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
    with torch.no_grad():
        cond, pooled = clip.encode_from_tokens(clip.tokenize(""), return_pooled=True)
    return zero_conditioning(layout, cond.shape[1:], None if pooled is None else pooled.shape[-1])


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
    captions = Captions(clip, layout, zero_for(patcher, clip, layout))
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
