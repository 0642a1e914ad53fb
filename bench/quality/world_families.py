"""The shapes world's tiny models per family: how each is built (ComfyUI's own classes, some
wider or with a tokenizer that knows the world's words), which latent format its VAE has, and
what its model gets besides the text.

Most layouts are tools/tiny_models.build(layout, seed). The bench's own variants: the small
SD1.5 UNet, Chroma / Flux.2 klein / Lumina 2 / WAN 2.1 / HiDream 128 wide, and stand-in
tokenizers (Gemma's SentencePiece for Lumina 2, umT5's for WAN, Llama's BPE for HiDream: their
real files are not in the ComfyUI tree) trained on the world's words as well as the pack's test
sentences. The world's VAE is always shapes_vae's TAESD; `vae_of` fits it to the family's latent
format (scale / shift, taef2's 128 channels, WAN 2.1's per-channel normalisation and time axis).
"""
import functools
import importlib.util
import io
import pathlib
import sys

import torch

import comfy.latent_formats
import comfy.model_patcher
import comfy.sd
import comfy.supported_models_base
import comfy.text_encoders.wan

import shapes_vae as vae_module
import shapes_world as world

REPO = pathlib.Path(__file__).resolve().parents[2]
LATENT_CHANNELS = {"sd15": 4, "sd3": 16, "flux": 16, "zimage": 16, "chroma": 16, "flux2_klein": 128, "qwen_image": 16,
                   "lumina2": 16, "wan21": 16, "hidream": 16}
FLUX_LATENT = (0.3611, 0.1159)   # Flux.1's latent format (Z-Image's, Chroma's, Lumina 2's): TAESD vae_scale / vae_shift
# ComfyUI's detection assumes full-size heads: these are built in memory, never from a file
IN_MEMORY = ("flux", "zimage", "chroma", "flux2_klein", "qwen_image", "lumina2", "wan21", "hidream")


def tiny_models():
    """tools/tiny_models.py by path (tools/ is no package), loaded once."""
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
    the smaller UNet, or with "hidden": N a Chroma / Flux.2 klein / Lumina 2 / WAN 2.1 / HiDream N
    wide (the pack's tiny Chroma, 64 wide with 0.3 M parameters, did not learn the world's words in
    1000 steps: colours in generated pictures 0.67 vs 0.65 by chance), from one seeded generator
    the same way."""
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
    if layout == "hidream" and config.get("hidden"):
        return world_hidream(config["hidden"], seed)
    return tiny.build(layout, seed)


def world_sentences():
    """Every one-object caption of the full world: what a stand-in tokenizer must learn to spell."""
    words = world.VARIANTS["full"]
    return [world.caption([(c, s)], b) for c in words["colours"] for s in words["shapes"] for b in words["backgrounds"]]


@functools.lru_cache(maxsize=None)
def world_spiece(corpus, **options):
    """Bytes of a BPE SentencePiece model (160 pieces) trained on `corpus` (a family's stand-in
    sentences) plus the world's captions, with the family's special ids in `options`; once per
    process and arguments."""
    import sentencepiece
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter((list(corpus) + world_sentences()) * 4), model_writer=out, vocab_size=160,
        model_type="bpe", num_threads=1, minloglevel=2, **options)
    return out.getvalue()


def world_wan21(width, seed):
    """WAN 2.1 text-to-video `width` wide (2 heads) on one-frame videos, its stand-in umT5
    tokenizer trained with the world's words as well (tools/tiny_families/wan.py's knows a few test
    sentences only)."""
    wan = sys.modules["ledits_tools_tiny_families_wan"]
    spiece = world_spiece(tuple(wan._CORPUS), pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False)

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
                         tokenizer_data={"spiece_model": spiece})
    wan.fill(clip.cond_stage_model, generator)
    return patcher, clip, None


def world_hidream(width, seed):
    """HiDream I1 `width` wide (2 heads), its stand-in Llama tokenizer trained with the world's words
    as well (the tokenizer is built with the model; the pack's own stays as it was)."""
    from unittest import mock
    hidream = sys.modules["ledits_tools_tiny_families_hidream"]
    unet = dict(hidream.UNET, attention_head_dim=width // 2, axes_dims_rope=[width // 4, width // 8, width // 8])
    hidream.llama_tokenizer_folder.cache_clear()
    try:
        with mock.patch.object(hidream, "_CORPUS", tuple(hidream._CORPUS) + tuple(world_sentences())):
            return sys.modules["ledits_tools_tiny_dit_models"].assemble(hidream.TinyHiDream, unet, seed)
    finally:
        hidream.llama_tokenizer_folder.cache_clear()


def world_lumina2(width, seed):
    """Lumina 2 `width` wide (2 heads) whose stand-in Gemma tokenizer also learned the world's words:
    the pack's tiny one (tools/tiny_families/lumina2.py) knows a few test sentences and spells
    "square" in pieces that other words share."""
    lumina = sys.modules["ledits_tools_tiny_families_lumina2"]
    spiece = world_spiece(tuple(lumina._CORPUS), pad_id=0, eos_id=1, bos_id=2, unk_id=3)

    class Tokenizer(lumina.TinyLuminaTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            super().__init__(embedding_directory, dict(tokenizer_data, spiece_model=spiece))

    class WorldLumina2(lumina.TinyLumina2):
        unet_config = {"image_model": "lumina2", "dim": width}

        def clip_target(self, state_dict={}):
            return comfy.supported_models_base.ClipTarget(Tokenizer, lumina.TinyLuminaTE)
    unet = dict(lumina.UNETS["lumina2"], dim=width, axes_dims=[width // 8, 3 * width // 16, 3 * width // 16])
    return sys.modules["ledits_tools_tiny_dit_models"].assemble(WorldLumina2, lumina._accepted(unet), seed)


def vae_of(sd, channels, latent_format=None):
    """comfy.sd.VAE of a world TAESD state dict, as VAELoader loads it (taef2: by its metadata).
    latent_format "wan21": a per-channel (vae_scale, vae_shift) and one-frame video latents."""
    metadata = {"tae_latent_channels": 128} if channels == 128 else None
    if latent_format != "wan21":
        return comfy.sd.VAE(sd=with_latent_format(sd, latent_format), metadata=metadata)
    return one_frame_vae(per_channel_vae(comfy.sd.VAE(sd=sd)))


def latent_format_of(layout):
    """(vae_scale, vae_shift) the layout's TAESD needs other than its channel count's default,
    or "wan21" (Qwen-Image, WAN: WAN 2.1's per-channel latent)."""
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


def model_latent(images, layout):
    """What VAE Encode gives the model for (B, 3, H, W) pictures, computed analytically: the
    encoder output, with a time axis where the family's latents are videos (Qwen-Image, WAN)."""
    latent = vae_module.latent_of(images, LATENT_CHANNELS[layout])
    return latent.unsqueeze(2) if latent_format_of(layout) == "wan21" else latent


# ----------------------------------------------------------------------------- text
def family_inputs(layout, context):
    """Inputs the sampler gives the model besides the text: Flux dev's distilled guidance (3.5, as
    sampling sets it; Chroma always 0), NextDiT's count of text tokens."""
    if layout in ("flux", "chroma"):
        return {"guidance": torch.full((context.shape[0],), 3.5 if layout == "flux" else 0.0)}
    if layout in ("zimage", "lumina2"):
        return {"num_tokens": context.shape[1]}
    return {}


def pooled_extra(layout, pooled):
    return {"y": pooled} if layout in ("sd3", "flux", "hidream") else {}
