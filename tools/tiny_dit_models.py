"""Tiny random-weight flow-matching DiTs: SD3 / SD3.5-medium (MMDiT) and Flux dev / schnell.

Loaded by path from tools/tiny_models.py (which keeps the public API); needs ComfyUI importable.
Every part is one of ComfyUI's own classes with a small config, so model_sampling, latent formats,
extra_conds, tokenizers and attention calls are the real ones of those families:

* SD3 / SD3.5: comfy.supported_models.SD3 subclasses whose unet_config is exactly what
  model_detection.detect_unet_config() reads back from the weights, so the checkpoint files load
  through CheckpointLoaderSimple (the classes go first in supported_models.models). MMDiT fixes
  head width 64 and hidden = 64 * depth. Text: tiny CLIP-L + CLIP-G, no T5 (SD3's text path
  appends T5 tokens of width 4096, so a tiny T5 cannot fit); ComfyUI zero-pads the CLIP features
  to 4096 and concatenates the pooled outputs (the y/adm width).
* Flux dev / schnell: comfy.supported_models.Flux / FluxSchnell subclasses. Flux detection assumes
  full-size heads (0.3.64 also hidden 3072), so they are built in memory only, never from a file.
  Text: tiny T5 (256 tokens, real tokenizer) for context, tiny CLIP-L pooled for the vector.
* VAE: ComfyUI's TAESD with 16 latent channels (detected as such from its weights).
"""
import dataclasses

import torch

import comfy.ldm.flux.model
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.taesd.taesd
import comfy.text_encoders.flux
import comfy.text_encoders.sd3_clip

# SD3 takes CLIP's penultimate layer (layer_idx -2): at least 3 layers.
CLIP_L = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
          "projection_dim": 64}
CLIP_G = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
          "projection_dim": 64}
T5 = {"d_model": 64, "d_ff": 128, "d_kv": 32, "num_heads": 2, "num_layers": 2}
SD3_CONTEXT = 4096                       # ComfyUI pads CLIP-L + CLIP-G features to T5-XXL's width
SD3_POOLED = CLIP_L["hidden_size"] + CLIP_G["projection_dim"]   # clip_l pooled (unprojected) + clip_g projected
FLUX_CONTEXT = T5["d_model"]
FLUX_POOLED = CLIP_L["hidden_size"]      # Flux uses clip_l's unprojected pooled output

_MMDIT_DEPTH = 2                         # -> hidden 128, 2 heads x 64, 2 joint blocks
_POS_EMBED_MAX = 64                      # patches per side: up to 1024 px images


def _mmdit(qk_norm=None, x_block_self_attn_layers=()):
    """The dict detect_unet_config() returns for these weights (in-memory build == file load)."""
    config = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": _MMDIT_DEPTH, "input_size": None,
              "adm_in_channels": SD3_POOLED,
              "context_embedder_config": {"target": "torch.nn.Linear",
                                          "params": {"in_features": SD3_CONTEXT, "out_features": 64 * _MMDIT_DEPTH}},
              "num_patches": _POS_EMBED_MAX ** 2, "pos_embed_max_size": _POS_EMBED_MAX,
              "pos_embed_scaling_factor": None, "x_block_self_attn_layers": list(x_block_self_attn_layers)}
    if qk_norm:
        config["qk_norm"] = qk_norm
    return config


def _flux_params_config(params_class, config):
    """`config` plus the fields newer hosts (0.33) require and Flux.1-like models leave empty."""
    fields = {f.name for f in dataclasses.fields(params_class)}
    extra = {"txt_ids_dims": [], "vec_in_dim": FLUX_POOLED}
    return dict(config, **{k: v for k, v in extra.items() if k in fields and k not in config})


def _flux(guidance_embed):
    """Flux dev layout at hidden 128: 2 heads x 64 (rope axes 16+24+24), 2 double + 2 single blocks."""
    config = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2,
              "vec_in_dim": FLUX_POOLED, "context_in_dim": FLUX_CONTEXT, "hidden_size": 128, "mlp_ratio": 4.0,
              "num_heads": 2, "depth": 2, "depth_single_blocks": 2, "axes_dim": [16, 24, 24], "theta": 10000,
              "qkv_bias": True, "guidance_embed": guidance_embed}
    # Newer hosts (0.33) added required FluxParams fields; fill them with Flux.1's values.
    config = _flux_params_config(comfy.ldm.flux.model.FluxParams, config)
    fields = {f.name: f for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    missing = [name for name, f in fields.items() if name not in config and
               f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RuntimeError(f"this host's FluxParams needs fields the tiny Flux does not set: {missing}")
    return config


UNETS = {"sd3": _mmdit(), "sd35": _mmdit("rms", [0]), "flux": _flux(True), "flux_schnell": _flux(False)}
_MMDIT_MATCH = ("in_channels", "depth", "adm_in_channels", "pos_embed_max_size", "x_block_self_attn_layers")


class TinySD3ClipModel(comfy.text_encoders.sd3_clip.SD3ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(clip_l=True, clip_g=True, t5=False, device=device, dtype=dtype, model_options={
            **model_options, "clip_l_model_config": CLIP_L, "clip_g_model_config": CLIP_G})


class TinyFluxClipModel(comfy.text_encoders.flux.FluxClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, model_options={
            **model_options, "clip_l_model_config": CLIP_L, "t5xxl_model_config": T5})


class TinySD3(supported.SD3):
    unet_config = {k: UNETS["sd3"][k] for k in _MMDIT_MATCH}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.text_encoders.sd3_clip.SD3Tokenizer, TinySD3ClipModel)


class TinySD35(TinySD3):
    """SD3.5-medium traits: RMS qk-norm, and an extra image-only attention in block 0."""
    unet_config = dict({k: UNETS["sd35"][k] for k in _MMDIT_MATCH}, qk_norm="rms")


class TinyFlux(supported.Flux):
    unet_config = {"image_model": "flux", "guidance_embed": True, "hidden_size": 128}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.FluxTokenizer, TinyFluxClipModel)


class TinyFluxSchnell(supported.FluxSchnell):
    unet_config = {"image_model": "flux", "guidance_embed": False, "hidden_size": 128}
    clip_target = TinyFlux.clip_target


CLASSES = {"sd3": TinySD3, "sd35": TinySD35, "flux": TinyFlux, "flux_schnell": TinyFluxSchnell}
FILE_LAYOUTS = ("sd3", "sd35")           # ComfyUI's detection reproduces these configs from a file


def fill(module, generator):
    """Deterministic init (ComfyUI leaves weights uninitialised): matrices N(0, 1/sqrt(fan_in)),
    norm scales 1 (`.weight`, or Flux's `.scale` on 0.3.64), biases 0, MMDiT pos_embed N(0, 1)
    so positions differ; CLIP logit_scale as in ComfyUI."""
    with torch.no_grad():
        for name, p in list(module.named_parameters()) + list(module.named_buffers()):
            if not p.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "logit_scale":
                p.fill_(4.6055)
            elif leaf == "pos_embed":
                p.copy_(torch.randn(p.shape, generator=generator))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) / (p[0].numel() ** 0.5))
            elif leaf in ("weight", "scale", "vae_scale"):
                p.fill_(1.0)
            else:
                p.zero_()


def assemble(config_class, unet_config, seed=0, latent_channels=16, device="cpu"):
    """(ModelPatcher, CLIP, VAE) from a model config class and its diffusion-model config: the
    network, the text encoders and a TAESD, filled in that order from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    config = config_class(dict(unet_config, dtype=torch.float32))
    model = config.get_model({})
    fill(model.diffusion_model, generator)  # not model_sampling: its sigma buffers must stay
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device(device),
                                               offload_device=torch.device("cpu"))
    clip = comfy.sd.CLIP(config.clip_target(), embedding_directory=None)
    fill(clip.cond_stage_model, generator)
    taesd = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    fill(taesd, generator)
    vae = comfy.sd.VAE(sd=taesd.state_dict())
    return patcher, clip, vae


def build(layout, seed=0):
    """(ModelPatcher, CLIP, VAE) of a tiny DiT, weights from `seed` (same seed, same weights)."""
    return assemble(CLASSES[layout], UNETS[layout], seed)


def write_checkpoint(layout, path, seed=0):
    if layout not in FILE_LAYOUTS:
        raise ValueError(f"tiny {layout!r} is built in memory only: ComfyUI's Flux detection assumes "
                         "full-size heads, so a tiny Flux file would not load")
    patcher, clip, vae = build(layout, seed)
    comfy.sd.save_checkpoint(str(path), patcher, clip, vae)
    return path


def unsupported_model(kind):
    """A tiny MODEL of a family LEDITS++ refuses (no text encoder, no VAE: only the refusal is
    tested): "flux_fill" (Flux inpainting: image + mask channels in), "chroma_radiance" (Chroma's
    pixel-space variant: no VAE latents), "wan" (WAN 2.1 image-to-video: image + mask channels in; its text-to-video model is supported)."""
    import comfy.ldm.chroma_radiance.model
    flux_like = {"context_in_dim": FLUX_CONTEXT, "hidden_size": 128, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1,
                 "depth_single_blocks": 1, "axes_dim": [16, 24, 24], "theta": 10000, "patch_size": 2,
                 "qkv_bias": True, "out_channels": 16}
    configs = {
        "flux_fill": (supported.FluxInpaint, _flux_params_config(comfy.ldm.flux.model.FluxParams, dict(
            flux_like, image_model="flux", in_channels=96, vec_in_dim=FLUX_POOLED, guidance_embed=True))),
        "chroma_radiance": (supported.ChromaRadiance, _host_fields(
            comfy.ldm.chroma_radiance.model.ChromaRadianceParams, dict(
                flux_like, image_model="chroma_radiance", in_channels=3, out_channels=3, patch_size=16, in_dim=64,
                out_dim=128, hidden_dim=32, n_layers=1, nerf_hidden_size=16, nerf_mlp_ratio=2, nerf_depth=1,
                nerf_max_freqs=4, nerf_tile_size=0, nerf_final_head_type="linear", nerf_embedder_dtype=None,
                use_x0=False, use_sequential_txt_ids=False, txt_ids_dims=[], vec_in_dim=None))),
        "wan": (supported.WAN21_I2V, {"image_model": "wan2.1", "model_type": "i2v", "dim": 64, "ffn_dim": 128,
                                      "freq_dim": 32, "text_dim": 64, "num_heads": 2, "num_layers": 1,
                                      "in_dim": 36, "out_dim": 16}),
    }
    return bare_model(*configs[kind])


def _host_fields(params_class, config):
    """`config` without the fields this host's params class lacks (newer hosts added some)."""
    fields = {f.name for f in dataclasses.fields(params_class)}
    return {k: v for k, v in config.items() if k in fields or k == "image_model"}


def bare_model(config_class, unet_config):
    """A ModelPatcher of the network alone (ComfyUI leaves its weights uninitialised)."""
    model = config_class(dict(unet_config, dtype=torch.float32)).get_model({})
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
