"""Qwen-Image (text-to-image, 2512 included): one stack of double-stream blocks with joint
[text; image] attention, text first (nodes/dit_capture.py); context = Qwen2.5-VL hidden states of
the user's turn of a chat template; real CFG; latents (B, 16, 1, H, W) in the WAN 2.1 format.

Unconditional prediction without a `negative`: zeros of the length of an empty prompt's encoding
(5 tokens, what ComfyUI's ConditioningZeroOut makes of CLIP Text Encode ""). The encoded empty
prompt itself is the better unconditional, but Inversion and the edit nodes take no CLIP to encode
it with; zeros carry no content (the text stream enters every block as txt_in's bias, since
txt_norm(0) = 0), and the empty prompt's length keeps the text part of every joint attention as
short as the model's own unconditional input. Connect CLIP Text Encode "" as `negative` for the
model's real unconditional prediction.

`auto` blocks: the last two thirds of the stack (60 blocks: 20-59), SD3's MMDiT rule, kept after
measuring trained tiny Qwen-Image models (bench/dit_block_new_layouts.md: IoU 0.563 vs 0.575 for
every block, -0.012 +- 0.003 over 2 seeds, at 2/3 of the capture cost; the second half or last
third alone lose 0.07-0.10).
"""
import torch

import comfy.text_encoders.qwen_image

from .base import JointDiTFamily

EMPTY_PROMPT_TOKENS = 5        # "" -> <|im_end|> \n <|im_start|> assistant \n after the template cut
IM_START, USER, NEWLINE = 151644, 872, 198


class QwenImageFamily(JointDiTFamily):
    name = "Qwen-Image"
    host_classes = ("QwenImage",)
    weak_zero_negative = (
        "every prompt carries the chat template's tokens, so a concept minus zeros edits the whole picture "
        "(a trained tiny Qwen-Image removed 0 of 16 objects this way, with or without masks; against the "
        "encoded empty prompt 3 with masks and 12 without)")

    @staticmethod
    def base_channels(diffusion_model):
        """The patchified latent: 16 channels x 2 x 2 = 64 in, 16 out."""
        return diffusion_model.out_channels * diffusion_model.patch_size ** 2

    def unsupported_variant(self, diffusion_model):
        if getattr(diffusion_model.time_text_embed, "use_additional_t_cond", False):
            return ("is not supported: it is Qwen-Image-Layered, which decomposes an image into RGBA layers "
                    "instead of generating one image; use the plain text-to-image Qwen-Image")
        return super().unsupported_variant(diffusion_model)

    def joint_blocks(self, diffusion_model):
        return [("double_block", i) for i in range(len(diffusion_model.transformer_blocks))]

    def default_blocks(self, diffusion_model):
        n = len(diffusion_model.transformer_blocks)
        return range(round(n / 3), n)

    def context_width(self, model):
        return model.model.diffusion_model.txt_in.in_features

    def zero_conditioning(self, model):
        return [[torch.zeros(1, EMPTY_PROMPT_TOKENS, self.context_width(model)), {}]]

    def concept_layout(self, clip, tokens):
        """The concept's tokens inside the context the DiT gets: QwenImageTEModel drops the system
        prompt and `<|im_start|>user\\n` (context_start) and keeps the template's 5-token tail. Word
        ids cannot tell the user's words from the template's (the tokenizer gives every token word
        id 1), so the words are what differs from the templated empty prompt."""
        if not isinstance(clip.cond_stage_model, comfy.text_encoders.qwen_image.QwenImageTEModel):
            return None
        ids = [int(item[0]) for item in tokens["qwen25_7b"][0]]
        empty = [int(item[0]) for item in clip.tokenize("")["qwen25_7b"][0]]
        first = _common_prefix(ids, empty)
        last = len(ids) - _common_prefix(ids[first:][::-1], empty[first:][::-1])
        start = context_start(ids)
        positions = list(range(max(first, start) - start, last - start))
        if not positions:
            raise ValueError("the concept text has no tokens; enter a word or phrase to edit with")
        return positions, len(ids) - start


def context_start(ids):
    """Where the context begins in the templated token ids, by the rule of the host's
    QwenImageTEModel.encode_token_weights: at the last of the first two `<|im_start|>`, moved past
    `user\\n` when those follow."""
    starts = [i for i, token in enumerate(ids) if token == IM_START][:2]
    start = starts[-1] if starts else -1
    if len(ids) > start + 3 and ids[start + 1] == USER and ids[start + 2] == NEWLINE:
        start += 3
    return start % len(ids)


def _common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


QWEN_IMAGE = QwenImageFamily()
