"""Tiny Flux.2 (comfy.model_base.Flux2, ComfyUI 0.33+): Flux.1's double + single blocks with
Flux.2's traits (128 latent channels at /16, patch 1, four rope axes with the text on axis 3,
global modulation, no vector_in, no biases). Layouts:

* "flux2_klein" (4B; base and step-distilled share the network, only the sampling differs) and
  "flux2_klein_9b": a tiny Qwen3 behind ComfyUI's KleinTokenizer (the real qwen25 tokenizer
  files, chat template, right-padded to 512); context = layers 9, 18, 27 side by side.
* "flux2_dev": guidance-distilled (guidance_in), a tiny Mistral 3 behind ComfyUI's
  Flux2Tokenizer fed a tiny tekken JSON (the real one is a key of the 24B text-encoder file):
  256 one-byte tokens plus the special tokens the template uses. No tokenizer padding;
  model_base.Flux2 left-pads the context to 512.

VAE: ComfyUI's Flux.2 TAESD ("taef2": 32 channels x 2 x 2 = 128 at /16), loaded as the VAELoader
node loads it (tae_latent_channels 128). Docs: flow_models.md §5.3-5.4.
"""
import base64
import dataclasses
import json

import torch

import comfy.model_base
import comfy.sd
import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.taesd.taesd
import ledits_tools_tiny_dit_models as dit   # tools/tiny_dit_models.py, registered by tools/tiny_models.py

HOST_CLASS = "Flux2"


TE_HIDDEN = 32                   # text-encoder width: the DiT context is 3 layers side by side
CONTEXT = 3 * TE_HIDDEN
# Qwen3 / Mistral keep head_dim 128 (a class attribute); the layers ComfyUI reads must exist.
QWEN3 = {"hidden_size": TE_HIDDEN, "intermediate_size": 64, "num_hidden_layers": 28, "num_attention_heads": 2,
         "num_key_value_heads": 1}
TEKKEN_SPECIALS = 16             # ids 0-15: special tokens; byte b has id 16 + b
MISTRAL3 = {"hidden_size": TE_HIDDEN, "intermediate_size": 64, "num_hidden_layers": 31, "num_attention_heads": 2,
            "num_key_value_heads": 1, "vocab_size": TEKKEN_SPECIALS + 256, "final_norm": False}


def tekken_json():
    """A tekken tokenizer blob: every byte one token (no merges) plus Mistral's special tokens,
    with <s> = 1 and <pad> = 11 as the Mistral3Tokenizer expects."""
    specials = {0: "<unk>", 1: "<s>", 2: "</s>", 3: "[INST]", 4: "[/INST]", 11: "<pad>",
                12: "[SYSTEM_PROMPT]", 13: "[/SYSTEM_PROMPT]"}
    data = {"config": {"default_num_special_tokens": TEKKEN_SPECIALS, "default_vocab_size": TEKKEN_SPECIALS + 256},
            "vocab": [{"rank": b, "token_bytes": base64.b64encode(bytes([b])).decode()} for b in range(256)],
            "special_tokens": [{"rank": rank, "token_str": text, "is_control": True}
                               for rank, text in sorted(specials.items())]}
    return json.dumps(data).encode()


def flux2_config(guidance_embed):
    """Flux.2's traits (model_detection's "flux2" branch) at hidden 64: 2 heads x 32 (rope 8 x 4)."""
    import comfy.ldm.flux.model
    config = {"image_model": "flux2", "in_channels": 128, "out_channels": 128, "patch_size": 1, "vec_in_dim": None,
              "context_in_dim": CONTEXT, "hidden_size": 64, "mlp_ratio": 3.0, "num_heads": 2, "depth": 2,
              "depth_single_blocks": 2, "axes_dim": [8, 8, 8, 8], "theta": 2000, "qkv_bias": False,
              "ops_bias": False, "global_modulation": True, "mlp_silu_act": True, "txt_ids_dims": [3],
              "default_ref_method": "index", "ref_index_scale": 10.0, "guidance_embed": guidance_embed}
    fields = {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    return {k: v for k, v in config.items() if k in fields or k == "image_model"}


def _text_encoder(variant):
    """(tokenizer class, text-encoder class) of a variant, the text encoder overlaid tiny."""
    import comfy.text_encoders.flux as flux_te
    if variant == "dev":
        tekken = torch.frombuffer(bytearray(tekken_json()), dtype=torch.uint8)

        class Tokenizer(flux_te.Flux2Tokenizer):
            def __init__(self, embedding_directory=None, tokenizer_data={}):
                super().__init__(embedding_directory, dict(tokenizer_data, tekken_model=tekken))
        base, key, overlay = flux_te.flux2_te(), "mistral3_24b", MISTRAL3
    else:
        key = "qwen3_4b" if variant == "klein" else "qwen3_8b"
        Tokenizer = flux_te.KleinTokenizer if variant == "klein" else flux_te.KleinTokenizer8B
        base, overlay = flux_te.klein_te(model_type=key), dict(QWEN3, lm_head=False)

    class TextEncoder(base):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype,
                             model_options={**model_options, f"{key}_model_config": overlay})
    return Tokenizer, TextEncoder


def _config_class(variant):
    tokenizer, encoder = _text_encoder(variant)

    class TinyFlux2(supported.Flux2):
        unet_config = {"image_model": "flux2", "hidden_size": 64, "guidance_embed": variant == "dev"}

        def clip_target(self, state_dict={}):
            return comfy.supported_models_base.ClipTarget(tokenizer, encoder)
    TinyFlux2.__name__ = f"TinyFlux2_{variant}"
    return TinyFlux2


def taef2(seed):
    """ComfyUI's Flux.2 TAESD (128 channels, /16), random weights from `seed`."""
    taesd = comfy.taesd.taesd.TAESD(latent_channels=128)
    dit.fill(taesd, torch.Generator().manual_seed(seed + 1))
    return comfy.sd.VAE(sd=taesd.state_dict(), metadata={"tae_latent_channels": 128})


def build(variant, seed=0):
    """(ModelPatcher, CLIP, VAE) of a tiny Flux.2 `variant` ("klein", "klein_9b", "dev")."""
    patcher, clip, _ = dit.assemble(_config_class(variant), flux2_config(variant == "dev"), seed, latent_channels=16)
    return patcher, clip, taef2(seed)


VARIANTS = ("klein", "klein_9b", "dev")
if getattr(comfy.model_base, HOST_CLASS, None) is not None:
    BUILDERS = {f"flux2_{v}": (lambda seed=0, v=v: build(v, seed)) for v in VARIANTS}
    SKIPPED = {}
else:
    BUILDERS = {}
    SKIPPED = {f"flux2_{v}": f"this host has no comfy.model_base.{HOST_CLASS} (Flux.2 needs ComfyUI 0.33 or newer)"
               for v in VARIANTS}
