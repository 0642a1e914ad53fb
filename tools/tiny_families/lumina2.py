"""Tiny random-weight Z-Image (ComfyUI 0.33+) and Lumina 2 (both hosts): NextDiT
(comfy/ldm/lumina/model.py) built in memory from ComfyUI's own classes.

* "zimage": comfy.supported_models.ZImage (shift 3) with the real Z-Image traits at dim 256 (the
  smallest width: a 256-wide timestep embedding feeds Linear(min(dim, 256))): 2 heads x 128 (rope
  axes 32 + 48 + 48, theta 256), z_image_modulation, time_scale 1000, text and image tokens each
  padded to a multiple of 32 with learned pad tokens. Text: ZImageTokenizer (the real Qwen
  tokenizer and chat template) and a tiny Qwen3 (64 wide). Turbo and base share this layout.
* "lumina2": comfy.supported_models.Lumina2 (shift 6): dim 64, 2 heads x 32, 1 kv head, no
  padding. Text: Gemma2BTokenizer on a stand-in SentencePiece model trained in memory (Gemma's
  ids: pad 0, eos 1, bos 2, unk 3; the Gemma file is not in the ComfyUI tree) and a tiny Gemma 2
  (48 wide, so a Z-Image concept cannot pass as a Lumina 2 one).
* Both: 3 main layers, 1 refiner layer each; VAE = 16-channel TAESD (the Flux latent format both
  use). 0.3.64's NextDiT takes no rope_theta / z_image_modulation / time_scale /
  pad_tokens_multiple, so configs keep only what the host's constructor accepts.
"""
import inspect
import io

import comfy.ldm.lumina.model
import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.text_encoders.lumina2
import ledits_tools_tiny_dit_models as dit   # tools/tiny_dit_models.py, registered by tools/tiny_models.py

QWEN3 = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2,
         "num_key_value_heads": 1}
GEMMA2 = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 2,
          "num_key_value_heads": 1, "vocab_size": 512}
_COMMON = {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "n_layers": 3, "n_refiner_layers": 1,
           "qk_norm": True, "norm_eps": 1e-5}
UNETS = {
    "zimage": dict(_COMMON, dim=256, n_heads=2, n_kv_heads=2, cap_feat_dim=QWEN3["hidden_size"],
                   axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512], rope_theta=256.0,
                   ffn_dim_multiplier=8.0 / 3.0, z_image_modulation=True, time_scale=1000.0,
                   pad_tokens_multiple=32),
    "lumina2": dict(_COMMON, dim=64, n_heads=2, n_kv_heads=1, cap_feat_dim=GEMMA2["hidden_size"],
                    axes_dims=[8, 12, 12], axes_lens=[300, 512, 512], ffn_dim_multiplier=4.0),
}
# Text the stand-in SentencePiece model is trained on (words the tests use, split into pieces).
_CORPUS = ("a photo of a red cat", "a dog with glasses on a sofa", "a lighthouse by the sea at night",
           "a red hat and a blue coat", "watercolor painting of a cat", "an old man in a garden",
           "blurry low quality photo", "a cat sitting on a chair next to a window")


def _accepted(config):
    """The part of `config` this host's NextDiT constructor takes (0.3.64 has no **kwargs)."""
    parameters = inspect.signature(comfy.ldm.lumina.model.NextDiT.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return dict(config)
    return {k: v for k, v in config.items() if k in parameters}


_SPIECE = []


def standin_spiece_model():
    """Bytes of a small SentencePiece model with Gemma's special ids, trained once per process."""
    if not _SPIECE:
        import sentencepiece
        out = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(_CORPUS * 4), model_writer=out, vocab_size=90, model_type="bpe",
            pad_id=0, eos_id=1, bos_id=2, unk_id=3, num_threads=1, minloglevel=2)
        _SPIECE.append(out.getvalue())
    return _SPIECE[0]


class TinyLuminaTokenizer(comfy.text_encoders.lumina2.LuminaTokenizer):
    """Lumina 2's tokenizer classes on the stand-in SentencePiece model."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(embedding_directory=embedding_directory,
                         tokenizer_data={"spiece_model": standin_spiece_model(), **tokenizer_data})


class TinyLuminaTE(comfy.text_encoders.lumina2.LuminaModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, model_options={**model_options, "gemma2_2b_model_config": GEMMA2})


class TinyLumina2(supported.Lumina2):
    unet_config = {"image_model": "lumina2", "dim": UNETS["lumina2"]["dim"]}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(TinyLuminaTokenizer, TinyLuminaTE)


CLASSES = {"lumina2": TinyLumina2}
SKIPPED = {}
if hasattr(supported, "ZImage"):
    import comfy.text_encoders.z_image

    class TinyZImageTE(comfy.text_encoders.z_image.ZImageTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype,
                             model_options={**model_options, "qwen3_4b_model_config": QWEN3})

    class TinyZImage(supported.ZImage):
        unet_config = {"image_model": "lumina2", "dim": UNETS["zimage"]["dim"]}

        def clip_target(self, state_dict={}):
            return comfy.supported_models_base.ClipTarget(comfy.text_encoders.z_image.ZImageTokenizer, TinyZImageTE)

    CLASSES["zimage"] = TinyZImage
else:
    SKIPPED["zimage"] = "this ComfyUI has no comfy.supported_models.ZImage (Z-Image needs ComfyUI 0.33+)"


def build(layout, seed=0):
    """(ModelPatcher, CLIP, VAE) of a tiny Z-Image / Lumina 2, weights from `seed`."""
    return dit.assemble(CLASSES[layout], _accepted(UNETS[layout]), seed)


BUILDERS = {layout: (lambda seed=0, layout=layout: build(layout, seed)) for layout in CLASSES}
