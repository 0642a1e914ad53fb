"""Tiny random-weight WAN text-to-video models: WAN 2.1 (1.3B / 14B layout: 16 latent channels,
/8 VAE) and WAN 2.2 5B TI2V (48 channels, /16 VAE), built in memory from ComfyUI's own classes
(`supported_models.WAN21_T2V` / `WAN22_T2V` -> `model_base.WAN21` / `WAN22` -> WanModel), so
model_sampling (FLOW, shift 8, multiplier 1000), extra_conds, the umT5 text path and every
attention call are the host's.

* Network: {dim 64, ffn 128, 2 heads, 2 layers, text_dim 64}: per block self-attention over the
  video tokens, then cross-attention from them to the 512 umT5 tokens (flow_models.md §5.4).
  ComfyUI's WAN detection assumes 128-wide heads, so these are built in memory only.
* Text: `comfy.text_encoders.wan` (WanT5Tokenizer + umT5) with a tiny umT5 overlay. umT5's
  tokenizer is a SentencePiece model that lives inside the weights file (`spiece_model`), absent
  here: a small SentencePiece model is trained in memory (T5 ids: pad 0, EOS 1, unk 2, no BOS),
  so the host's tokenizer class, padding to 512 and zeroing after EOS are the real ones.
* VAE: the host's own WAN VAE class where it can be small. 0.33 reads the WAN 2.1 VAE's width from
  its weights (dim 8 here) and detects TAEHV for 48 channels; 0.3.64 fixes WAN 2.1's width at 96
  (127 M parameters, built) and WAN 2.2's at 160 (705 M: too big for a test machine, VAE None).
"""
import io

import torch

import comfy.model_patcher
import comfy.sd
import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.text_encoders.wan

from ledits_tools_tiny_dit_models import fill   # loaded by tools/tiny_models.py before this module

UMT5 = {"d_model": 64, "d_ff": 128, "d_kv": 32, "num_heads": 2, "num_layers": 2}
NETWORK = {"image_model": "wan2.1", "model_type": "t2v", "dim": 64, "ffn_dim": 128, "freq_dim": 256,
           "text_dim": UMT5["d_model"], "num_heads": 2, "num_layers": 2}
UNETS = {"wan21": dict(NETWORK, in_dim=16, out_dim=16), "wan22": dict(NETWORK, in_dim=48, out_dim=48)}

_CORPUS = ("a photo of a red cat", "a dog runs on the beach", "a man with glasses and a hat",
           "a woman walks in the rain", "a car drives down a city street at night", "sunset over the sea",
           "a bird flies over green trees", "watercolor painting of a mountain lake", "two children play",
           "a blue sky with white clouds", "a cat sleeps on a sofa", "snow falls on the old house")
_SPIECE = {}


def spiece_model(vocab_size=120):
    """A SentencePiece model (bytes) with umT5's special ids: pad 0, EOS 1, unk 2, no BOS."""
    if vocab_size not in _SPIECE:
        import sentencepiece
        buffer = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(_CORPUS * 4), model_writer=buffer, vocab_size=vocab_size, pad_id=0, eos_id=1,
            unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
        _SPIECE[vocab_size] = buffer.getvalue()
    return _SPIECE[vocab_size]


class TinyUMT5(comfy.text_encoders.wan.WanT5Model):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        vocab = {"vocab_size": 128}     # >= the SentencePiece vocabulary
        super().__init__(device=device, dtype=dtype, model_options={
            **model_options, "umt5xxl_model_config": dict(UMT5, **vocab)})


class TinyWAN21(supported.WAN21_T2V):
    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.text_encoders.wan.WanT5Tokenizer, TinyUMT5)


class TinyWAN22(supported.WAN22_T2V):
    clip_target = TinyWAN21.clip_target


def _wan21_vae(generator):
    """The host's WAN 2.1 VAE (/8, 4x in time) at the smallest width this host accepts."""
    import comfy.ldm.wan.vae
    vae = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], dropout=0.0)
    fill(vae, generator)
    try:
        return comfy.sd.VAE(sd=vae.state_dict())
    except RuntimeError:                    # 0.3.64: the width is fixed at 96, whatever the weights say
        vae = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                       attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
        fill(vae, generator)
        return comfy.sd.VAE(sd=vae.state_dict())


def _wan22_vae(generator):
    """0.33: TAEHV with 48 latent channels (/16, as WAN 2.2's VAE); 0.3.64 knows only the full VAE."""
    try:
        import comfy.taesd.taehv
    except ImportError:
        return None
    tae = comfy.taesd.taehv.TAEHV(latent_channels=48, latent_format=None)
    fill(tae, generator)
    return comfy.sd.VAE(sd=tae.state_dict())


def _build(config_class, layout, vae_builder):
    def build(seed=0):
        generator = torch.Generator().manual_seed(seed)
        config = config_class(dict(UNETS[layout], dtype=torch.float32))
        model = config.get_model({})
        fill(model.diffusion_model, generator)
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                                   offload_device=torch.device("cpu"))
        clip = comfy.sd.CLIP(config.clip_target(), embedding_directory=None,
                             tokenizer_data={"spiece_model": spiece_model()})
        fill(clip.cond_stage_model, generator)
        return patcher, clip, vae_builder(generator)
    return build


BUILDERS = {"wan21": _build(TinyWAN21, "wan21", _wan21_vae), "wan22": _build(TinyWAN22, "wan22", _wan22_vae)}
SKIPPED = {}
