"""Tiny HiDream I1 (comfy.model_base.HiDream -> comfy/ldm/hidream/model.py), built in memory from
ComfyUI's own classes (HiDream detection fixes the full size, so no checkpoint file).

* Network (docs flow_models.md 5.4): patch 2, in/out 16, 1 double + 1 single block, 2 heads x 32,
  4 routed / 2 active experts, rope axes [16, 8, 8], llama_layers [0, 1] (one Llama layer per block).
* Text: the host's HiDreamTokenizer and HiDreamTEModel with tiny CLIP-L / CLIP-G (pooled only),
  T5 (128 tokens) and Llama (2 layers; its vocabulary stays 128256 wide, since the tokenizer emits
  BOS 128000 and pad 128009).
* The Llama tokenizer file `comfy/text_encoders/llama_tokenizer/tokenizer.json` is not in these
  hosts, so a stand-in is written once per process into a temp folder: a byte-level BPE trained by
  the `tokenizers` library on a few sentences, with Llama 3's split pattern, BOS 128000 by a
  TemplateProcessing post-processor, and the host's own tokenizer_config.json. While the tiny
  tokenizer is constructed, the host's LLAMA3Tokenizer reads that folder instead of its own
  (every other argument is the host's). 0.33 reads the file with ComfyUI's pure-Python BPE;
  0.3.64 with transformers' LlamaTokenizerFast, which (transformers 5) re-tokenizes with a
  Metaspace pre-tokenizer, so the ids differ between hosts; positions are always read from what
  the host's tokenizer returns. Users with the real file are unaffected.
* VAE: ComfyUI's TAESD with 16 latent channels.
"""
import functools
import json
import pathlib
import tempfile
from unittest import mock

import comfy.supported_models as supported
import comfy.supported_models_base
import comfy.text_encoders.hidream
import comfy.text_encoders.hunyuan_video

from ledits_tools_tiny_dit_models import CLIP_G, CLIP_L, T5, assemble   # loaded by tools/tiny_models.py first

LLAMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 128256}
POOLED = CLIP_L["projection_dim"] + CLIP_G["projection_dim"]      # clip_l projected + clip_g pooled
UNET = {"image_model": "hidream", "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 1,
        "num_single_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2,
        "caption_channels": [T5["d_model"], LLAMA["hidden_size"]], "text_emb_dim": POOLED,
        "num_routed_experts": 4, "num_activated_experts": 2, "axes_dims_rope": [16, 8, 8],
        "max_resolution": [128, 128], "llama_layers": [0, 1]}

# Llama 3's pre-tokenizer split (the one pattern ComfyUI 0.33's BPE loader accepts).
LLAMA3_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_CORPUS = ("a photo of a red cat", "a dog with glasses", "a lighthouse at sunset", "a red hat on a cat",
           "watercolor painting of a house")
_SPECIAL = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eot_id|>": 128009}


@functools.lru_cache(maxsize=None)
def llama_tokenizer_folder():
    """A folder with a small Llama-3-style tokenizer.json and the host's tokenizer_config.json."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(_CORPUS * 4, trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    data = json.loads(tokenizer.to_str())
    data["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    data["added_tokens"] = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for s, i in _SPECIAL.items()]
    bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    data["post_processor"] = {
        "type": "TemplateProcessing", "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, bos, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                 "tokens": ["<|begin_of_text|>"]}}}
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ledits_tiny_llama_tokenizer_"))
    (folder / "tokenizer.json").write_text(json.dumps(data))
    host_config = pathlib.Path(comfy.text_encoders.hunyuan_video.__file__).parent / "llama_tokenizer"
    (folder / "tokenizer_config.json").write_text((host_config / "tokenizer_config.json").read_text())
    return str(folder)


class _StandInFiles:
    """LLAMA3Tokenizer's tokenizer class, reading the stand-in folder instead of the host's."""

    def __init__(self, host_class):
        self.host_class = host_class

    def from_pretrained(self, path, **kwargs):
        return self.host_class.from_pretrained(llama_tokenizer_folder(), **kwargs)


class TinyHiDreamTokenizer(comfy.text_encoders.hidream.HiDreamTokenizer):
    def __init__(self, embedding_directory=None, tokenizer_data={}):
        module = comfy.text_encoders.hunyuan_video
        with mock.patch.object(module, "LlamaTokenizerFast", _StandInFiles(module.LlamaTokenizerFast)):
            super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data)


class TinyHiDreamTE(comfy.text_encoders.hidream.HiDreamTEModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, model_options={
            **model_options, "vocab_size": LLAMA["vocab_size"], "clip_l_model_config": CLIP_L,
            "clip_g_model_config": CLIP_G, "t5xxl_model_config": T5, "llama_model_config": LLAMA})


class TinyHiDream(supported.HiDream):
    unet_config = {"image_model": "hidream", "num_layers": UNET["num_layers"]}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(TinyHiDreamTokenizer, TinyHiDreamTE)


def build(seed=0):
    """(ModelPatcher, CLIP, VAE) of a tiny HiDream I1, weights from `seed`."""
    return assemble(TinyHiDream, UNET, seed)


BUILDERS = {"hidream": build}
SKIPPED = {}
