"""SD3 / SD3.5 (MMDiT): joint blocks only; context = [CLIP-L/G chunks; T5 tokens]; real CFG."""
import torch

import comfy.text_encoders.sd3_clip

from ...ledits_core import concept_token_positions
from .base import JointDiTFamily


class SD3Family(JointDiTFamily):
    name = "SD3 / SD3.5 (MMDiT)"
    host_classes = ("SD3",)

    def joint_blocks(self, diffusion_model):
        return [("double_block", i) for i in range(len(diffusion_model.joint_blocks))]

    def default_blocks(self, diffusion_model):
        """The last two thirds (SD3.5-medium: 8-23): as good as all blocks on trained models, the
        early blocks localise worst, and Seg4Diff's SD3 grounding block (9 of 24) stays in."""
        n = len(diffusion_model.joint_blocks)
        return range(round(n / 3), n)

    def context_width(self, model):
        return model.model.diffusion_model.context_embedder.in_features

    def zero_conditioning(self, model):
        pooled = model.model.model_config.unet_config.get("adm_in_channels") or 2048
        return [[torch.zeros(1, 77, self.context_width(model)), {"pooled_output": torch.zeros(1, pooled)}]]

    def concept_layout(self, clip, tokens):
        """Context = [CLIP-L/G (77 per chunk, the shorter of the two); T5 tokens], each part only
        if its encoder is loaded (comfy.text_encoders.sd3_clip)."""
        encoder = clip.cond_stage_model
        if not isinstance(encoder, comfy.text_encoders.sd3_clip.SD3ClipModel):
            return None
        positions, length = [], 0
        if encoder.clip_l is not None or encoder.clip_g is not None:
            chunks = min(len(tokens["l"]), len(tokens["g"]))
            stream = tokens["g"] if encoder.clip_g is not None else tokens["l"]
            positions = concept_token_positions(stream[:chunks])
            length = 77 * chunks
        if encoder.t5xxl is not None:
            positions += [length + p for p in concept_token_positions(tokens["t5xxl"], chunk_length=None)]
            length += sum(len(chunk) for chunk in tokens["t5xxl"])
        return positions, length


SD3 = SD3Family()
