"""The DiT benchmark's model rows (bench/run_bench_dit.py): one entry per family, each a real layout's
diffusion-model config built from ComfyUI's own classes, with the tiny test text encoders of
tools/tiny_families (real tokenizers, so concept token positions are real; only the DiT's text-input
layer is narrowed to the tiny encoder's width). Weights are random: they do not change the time or
memory of the same rows.

A family whose full fp32 network does not fit a 24 GiB machine (or the benchmark's time on 2 shared
cores) is a *slice*: real width (hidden size, heads, head width, MLP ratio, rope axes, experts) with
fewer blocks, kept in the real model's proportions (double : single blocks, main : refiner layers),
so the `auto` blocks take the same share of the network as in the full model.
"""
import dataclasses
from typing import Callable

SD35_MEDIUM = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": 24, "input_size": None,
               "context_embedder_config": {"target": "torch.nn.Linear",
                                           "params": {"in_features": 4096, "out_features": 1536}},
               "num_patches": 384 ** 2, "pos_embed_max_size": 384, "pos_embed_scaling_factor": None,
               "qk_norm": "rms", "x_block_self_attn_layers": list(range(13))}
FLUX_WIDTH = {"hidden_size": 3072, "num_heads": 24, "axes_dim": [16, 56, 56], "depth": 3, "depth_single_blocks": 6}


@dataclasses.dataclass
class Row:
    layout: str                      # what is measured, for the report
    build: Callable                  # (tools/tiny_models module, device) -> (ModelPatcher, CLIP)
    latent_shape: Callable           # (batch, width, height, frames) -> latent tensor shape
    size: tuple = (128, 128)         # default width, height in pixels (short runs on 2 shared cores)
    frames: int = 1


def image_16(batch, width, height, frames):
    return (batch, 16, height // 8, width // 8)


def _sd35(tiny, device):
    dit = tiny.dit
    unet = dict(dit.UNETS["sd35"], **SD35_MEDIUM, adm_in_channels=dit.SD3_POOLED)
    return dit.assemble(dit.CLASSES["sd35"], unet, seed=0, device=device)[:2]


def _flux(tiny, device):
    dit = tiny.dit
    return dit.assemble(dit.CLASSES["flux"], dict(dit.UNETS["flux"], **FLUX_WIDTH), seed=0, device=device)[:2]


QWEN_IMAGE_BLOCKS = 1                # of 60; `auto` captures it (40 of 60 in full)


def _qwen_image(tiny, device):
    family = tiny._sibling("tiny_families/qwen_image")
    unet = dict(family.UNET, num_layers=QWEN_IMAGE_BLOCKS, attention_head_dim=128, num_attention_heads=24,
                axes_dims_rope=(16, 56, 56))
    return tiny.dit.assemble(family.TinyQwenImage, unet, seed=0, device=device)[:2]


FLUX2_KLEIN_BLOCKS = (1, 1)          # double, single of 5 + 20 (klein 4B); `auto` = both (15 of 25 in full)


def _flux2_klein(tiny, device):
    family = tiny._sibling("tiny_families/flux2")
    double, single = FLUX2_KLEIN_BLOCKS
    unet = dict(family.flux2_config(False), hidden_size=3072, num_heads=24, axes_dim=[32, 32, 32, 32],
                depth=double, depth_single_blocks=single)
    return tiny.dit.assemble(family._config_class("klein"), unet, seed=0, device=device)[:2]


FLUX2_DEV_BLOCKS = (1, 1)            # double, single of 8 + 48 (dev 32B: 6144 wide, 48 heads); 2.19 B parameters


def _flux2_dev(tiny, device):
    family = tiny._sibling("tiny_families/flux2")
    double, single = FLUX2_DEV_BLOCKS
    unet = dict(family.flux2_config(True), hidden_size=6144, num_heads=48, axes_dim=[32, 32, 32, 32],
                depth=double, depth_single_blocks=single)
    return tiny.dit.assemble(family._config_class("dev"), unet, seed=0, device=device)[:2]


ZIMAGE_LAYERS = (2, 1)               # main, refiner layers of 30, 2 (per stream); `auto` = every main layer (since 048214b)


def _zimage(tiny, device):
    family = tiny._sibling("tiny_families/lumina2")
    unet = family._accepted(dict(family.UNETS["zimage"], dim=3840, n_heads=30, n_kv_heads=30,
                                 n_layers=ZIMAGE_LAYERS[0], n_refiner_layers=ZIMAGE_LAYERS[1]))
    return tiny.dit.assemble(family.CLASSES["zimage"], unet, seed=0, device=device)[:2]


HIDREAM_BLOCKS = (1, 1)              # double, single of 16 + 32 (I1); `auto` = both (32 of 48 in full)


def _hidream(tiny, device):
    family = tiny._sibling("tiny_families/hidream")
    double, single = HIDREAM_BLOCKS
    llama_layers = [min(i, family.LLAMA["num_hidden_layers"] - 1) for i in range(double + single)]
    unet = dict(family.UNET, attention_head_dim=128, num_attention_heads=20, axes_dims_rope=[64, 32, 32],
                num_layers=double, num_single_layers=single, llama_layers=llama_layers)
    return tiny.dit.assemble(family.TinyHiDream, unet, seed=0, device=device)[:2]


CHROMA_BLOCKS = (1, 1)               # double, single of 19 + 38; `auto` = both (38 of 57 in full)
CHROMA_APPROXIMATOR_LAYERS = 1       # of 5: its per-call cost (344 modulation vectors) is the same on both sides
                                     # and would otherwise be most of a 2-block slice's time, hiding the capture


def _chroma(tiny, device):
    family = tiny._sibling("tiny_families/chroma")
    double, single = CHROMA_BLOCKS
    unet = dict(family.chroma_config(), hidden_size=3072, num_heads=24, axes_dim=[16, 56, 56], depth=double,
                depth_single_blocks=single, out_dim=3072, hidden_dim=5120, n_layers=CHROMA_APPROXIMATOR_LAYERS)
    return tiny.dit.assemble(family.TinyChroma, unet, seed=0, device=device)[:2]


WAN21_1_3B = {"dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30, "freq_dim": 256}


def _wan21(tiny, device):
    """WAN 2.1 1.3B's full network (30 blocks; `auto` = 20). The tiny WAN module's builder gives the
    umT5 tokenizer its SentencePiece model, so its config table gets this layout's entry."""
    family = tiny._sibling("tiny_families/wan")
    family.UNETS.setdefault("wan21_1.3b", dict(family.UNETS["wan21"], **WAN21_1_3B))
    patcher, clip, _ = family._build(family.TinyWAN21, "wan21_1.3b", lambda generator: None)(0)
    return patcher, clip


ROWS = {
    "sd35": Row("SD3.5-medium MMDiT, full (24 joint blocks, hidden 1536); pooled input narrowed", _sd35, image_16,
                size=(256, 256)),
    "flux": Row("Flux.1 width (hidden 3072), 3 double + 6 single of 19 + 38", _flux, image_16, size=(256, 256)),
    "qwen_image": Row(f"Qwen-Image width (24 heads x 128 = 3072), {QWEN_IMAGE_BLOCKS} of 60 blocks",
                      _qwen_image, lambda b, w, h, f: (b, 16, 1, h // 8, w // 8)),
    "flux2_klein": Row(f"Flux.2 klein 4B width (3072, 24 heads, MLP 3), {FLUX2_KLEIN_BLOCKS[0]} double + "
                       f"{FLUX2_KLEIN_BLOCKS[1]} single of 5 + 20", _flux2_klein,
                       lambda b, w, h, f: (b, 128, h // 16, w // 16)),
    "flux2_dev": Row(f"Flux.2 dev width (6144, 48 heads, MLP 3, guidance input), {FLUX2_DEV_BLOCKS[0]} double + "
                     f"{FLUX2_DEV_BLOCKS[1]} single of 8 + 48", _flux2_dev, lambda b, w, h, f: (b, 128, h // 16, w // 16)),
    "zimage": Row(f"Z-Image width (3840, 30 heads), {ZIMAGE_LAYERS[0]} of 30 main layers + {ZIMAGE_LAYERS[1]} + "
                  f"{ZIMAGE_LAYERS[1]} of 2 + 2 refiners",
                  _zimage, image_16),
    "hidream": Row(f"HiDream I1 width (20 heads x 128, 4 routed / 2 active experts), {HIDREAM_BLOCKS[0]} double + "
                   f"{HIDREAM_BLOCKS[1]} single of 16 + 32", _hidream, image_16),
    "chroma": Row(f"Chroma width (3072), {CHROMA_BLOCKS[0]} double + {CHROMA_BLOCKS[1]} single of 19 + 38, "
                  f"approximator {CHROMA_APPROXIMATOR_LAYERS} of 5 layers x 5120", _chroma, image_16),
    "wan21": Row("WAN 2.1 1.3B, full (30 blocks, dim 1536, 12 heads, ffn 8960)", _wan21,
                 lambda b, w, h, f: (b, 16, (f - 1) // 4 + 1, h // 8, w // 8), size=(112, 64), frames=9),
}
