"""Flux.1 (dev / schnell / Krea): double then single blocks; context = T5 tokens; dev is
guidance-distilled (one `guidance` value for every prediction, no real negative)."""
import torch

import comfy.text_encoders.flux

from ...ledits_core import concept_token_positions
from .base import JointDiTFamily


class FluxFamily(JointDiTFamily):
    name = "Flux.1 (dev, schnell, Krea)"
    host_classes = ("Flux",)
    text_encoder = comfy.text_encoders.flux.FluxClipModel   # its T5 tokens are the context

    def joint_blocks(self, diffusion_model):
        return ([("double_block", i) for i in range(len(diffusion_model.double_blocks))]
                + [("single_block", i) for i in range(len(diffusion_model.single_blocks))])

    def default_blocks(self, diffusion_model):
        """Every double-stream block and the second half of the single-stream ones (Flux.1: 0-18
        and 38-56): as good as all blocks on trained models, where double-only lost up to 0.10 IoU
        in one of three; covers ConceptAttention's (double 15-18) and FreeFlux's (single 21-24)."""
        double, single = len(diffusion_model.double_blocks), len(diffusion_model.single_blocks)
        return list(range(double)) + [double + j for j in range(single // 2, single)]

    def context_width(self, model):
        return model.model.diffusion_model.params.context_in_dim

    def zero_conditioning(self, model):
        params = model.model.diffusion_model.params
        return [[torch.zeros(1, 256, params.context_in_dim), {"pooled_output": torch.zeros(1, params.vec_in_dim)}]]

    def distilled_guidance(self, model):
        return bool(model.model.diffusion_model.params.guidance_embed)

    def concept_layout(self, clip, tokens):
        """Context = the T5 tokens only (CLIP-L gives the pooled vector)."""
        if not isinstance(clip.cond_stage_model, self.text_encoder):
            return None
        stream = tokens["t5xxl"]
        return concept_token_positions(stream, chunk_length=None), sum(len(chunk) for chunk in stream)


FLUX = FluxFamily()
