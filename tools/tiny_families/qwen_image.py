"""Tiny Qwen-Image (comfy.model_base.QwenImage, both hosts): the real network class with 6 double-
stream blocks of 2 heads x 32 (rope axes 8 + 12 + 12), 16-channel latents patchified to 64 inputs;
a tiny Qwen2.5-VL text encoder (64 wide, 2 layers) behind ComfyUI's own QwenImageTokenizer (the real
qwen25 tokenizer files and chat template) and QwenImageTEModel (its template cut); ComfyUI's WAN 2.1
VAE. Layout "qwen_image"; `layered_model()` gives a bare Qwen-Image-Layered network (ComfyUI 0.33+)
for the refusal test.

Qwen25_7BVLI always builds the full vision tower (0.66 G parameters); the text encoder is built
with a 32-wide, 2-layer one in its place (text prompts never reach it). The WAN VAE: 0.33 reads its
width from the weights (8 here, 0.9 M parameters); 0.3.64 fixes width 96. Docs: flow_models.md
§5.3-5.4.
"""
import inspect

import torch

import comfy.model_base
import comfy.sd
import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.text_encoders.qwen_image
import comfy.text_encoders.qwen_vl
import ledits_tools_tiny_dit_models as dit   # tools/tiny_dit_models.py, registered by tools/tiny_models.py

HOST_CLASS = "QwenImage"


TE_HIDDEN = 64
# head_dim stays 128 (a class attribute of the config): q/k/v are 2 x 128 and 1 x 128 wide.
QWEN25 = {"hidden_size": TE_HIDDEN, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
          "num_key_value_heads": 1}
UNET = {"image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 6,
        "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": TE_HIDDEN,
        "axes_dims_rope": (8, 12, 12)}


class _SmallVisionTower(comfy.text_encoders.qwen_vl.Qwen2VLVisionTransformer):
    def __init__(self, output_hidden_size=TE_HIDDEN, device=None, dtype=None, ops=None, **_):
        super().__init__(hidden_size=32, output_hidden_size=output_hidden_size, intermediate_size=64, num_heads=2,
                         num_layers=2, device=device, dtype=dtype, ops=ops)


class TinyQwenImageTE(comfy.text_encoders.qwen_image.QwenImageTEModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        full = comfy.text_encoders.qwen_vl.Qwen2VLVisionTransformer
        comfy.text_encoders.qwen_vl.Qwen2VLVisionTransformer = _SmallVisionTower
        try:
            super().__init__(device=device, dtype=dtype,
                             model_options={**model_options, "qwen25_7b_model_config": QWEN25})
        finally:
            comfy.text_encoders.qwen_vl.Qwen2VLVisionTransformer = full


class TinyQwenImage(supported.QwenImage):
    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.text_encoders.qwen_image.QwenImageTokenizer,
                                                      TinyQwenImageTE)


def wan21_vae(seed):
    """ComfyUI's WAN 2.1 VAE (Qwen-Image's), random weights from `seed`: 8 wide where the host reads
    the width from the weights (0.33), else the width the host fixes (96, ComfyUI 0.3.64)."""
    import comfy.ldm.wan.vae
    for width in (8, 96):
        vae = comfy.ldm.wan.vae.WanVAE(dim=width, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                       temperal_downsample=[False, True, True])
        dit.fill(vae, torch.Generator().manual_seed(seed + 1))
        try:
            return comfy.sd.VAE(sd=vae.state_dict())
        except RuntimeError:         # size mismatch: this host builds the VAE at its fixed width
            continue
    raise RuntimeError("this host's WAN 2.1 VAE loads neither width 8 nor 96")


def build(seed=0):
    """(ModelPatcher, CLIP, VAE) of the tiny Qwen-Image."""
    patcher, clip, _ = dit.assemble(TinyQwenImage, UNET, seed)
    return patcher, clip, wan21_vae(seed)


def layered_model():
    """A bare tiny Qwen-Image-Layered network (additional t-conditioning), for the refusal test;
    None on a host without Layered (ComfyUI 0.3.64)."""
    import comfy.ldm.qwen_image.model
    network = comfy.ldm.qwen_image.model.QwenImageTransformer2DModel
    if "use_additional_t_cond" not in inspect.signature(network).parameters:
        return None
    return dit.bare_model(TinyQwenImage, dict(UNET, use_additional_t_cond=True, default_ref_method="negative_index"))


if getattr(comfy.model_base, HOST_CLASS, None) is not None:
    BUILDERS = {"qwen_image": build}
    SKIPPED = {}
else:
    BUILDERS = {}
    SKIPPED = {"qwen_image": f"this host has no comfy.model_base.{HOST_CLASS}"}
