"""Chroma (comfy.model_base.Chroma, a Flux subclass; both hosts): Flux.1's blocks and attention
(double then single, [text; image], text first), without vector_in / guidance_in: the modulation
comes from `distilled_guidance_layer`, which a `guidance` cond (default 0) only feeds. Context =
T5 tokens without padding (PixArt tokenizer: "a photo of a cat" -> 8 tokens, EOS included), so
conds of different lengths run as separate model calls. Real CFG.
"""
import torch

import comfy.text_encoders.pixart_t5

from .flux import FluxFamily


class ChromaFamily(FluxFamily):
    name = "Chroma"
    host_classes = ("Chroma",)
    text_encoder = comfy.text_encoders.pixart_t5.PixArtT5XXL   # T5 tokens as tokenized: no padding

    def default_blocks(self, diffusion_model):
        """Flux.1's rule (every double block and the second half of the single ones; full size:
        0-18 and 38-56). Chroma is Flux.1-schnell's network (19 double + 38 single blocks, the
        same joint attention over [T5; image]) with another source of modulation, so the layout
        the rule was measured on is unchanged; no Chroma-specific study yet."""
        return super().default_blocks(diffusion_model)

    def zero_conditioning(self, model):
        """One zero token: what ConditioningZeroOut makes of the empty prompt (T5 "" = EOS alone),
        the shortest unconditional context. No pooled vector (Chroma has no vector_in; its text
        encoder gives None, which 0.3.64's Flux.encode_adm needs as a key); the `guidance` cond
        stays ComfyUI's default 0."""
        return [[torch.zeros(1, 1, self.context_width(model)), {"pooled_output": None}]]

    def distilled_guidance(self, model):
        return False


CHROMA = ChromaFamily()
