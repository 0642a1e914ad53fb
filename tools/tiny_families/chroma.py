"""Tiny Chroma (comfy.model_base.Chroma, a Flux subclass; both hosts): Flux.1's double + single
blocks with the modulation vectors of `distilled_guidance_layer` (no vector_in / guidance_in), a
tiny T5 behind ComfyUI's PixArt tokenizer (real T5 tokens, no padding) and the 16-channel TAESD.

Built in memory from ComfyUI's own classes (docs: flow_models.md §5.4): hidden 64, 2 heads x 32
(rope axes 4 + 14 + 14), 2 double + 2 single blocks, a one-layer approximator (in_dim 64 = the
16 + 16 + 32 wide timestep / guidance / index embeddings ComfyUI feeds it).
"""
import dataclasses

import comfy.ldm.chroma.model
import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.text_encoders.pixart_t5
import ledits_tools_tiny_dit_models as dit   # tools/tiny_dit_models.py, registered by tools/tiny_models.py


HIDDEN = 64


def chroma_config():
    """The diffusion-model config, with the ChromaParams fields this host requires (0.33 added
    txt_ids_dims and vec_in_dim, both empty for Chroma)."""
    config = {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": dit.T5["d_model"],
              "hidden_size": HIDDEN, "mlp_ratio": 4.0, "num_heads": 2, "depth": 2, "depth_single_blocks": 2,
              "axes_dim": [4, 14, 14], "theta": 10000, "patch_size": 2, "qkv_bias": True,
              "in_dim": 64, "out_dim": HIDDEN, "hidden_dim": 64, "n_layers": 1}
    fields = {f.name for f in dataclasses.fields(comfy.ldm.chroma.model.ChromaParams)}
    config.update({k: v for k, v in {"txt_ids_dims": [], "vec_in_dim": None}.items() if k in fields})
    return config


class TinyPixArtT5(comfy.text_encoders.pixart_t5.PixArtT5XXL):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, model_options={**model_options, "t5xxl_model_config": dit.T5})


class TinyChroma(supported.Chroma):
    unet_config = {"image_model": "chroma", "hidden_size": HIDDEN}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.text_encoders.pixart_t5.PixArtTokenizer, TinyPixArtT5)


def build(seed=0):
    """(ModelPatcher, CLIP, VAE) of a tiny Chroma, weights from `seed`."""
    return dit.assemble(TinyChroma, chroma_config(), seed, latent_channels=16)


BUILDERS = {"chroma": build}
SKIPPED = {}
