"""WAN 2.1 (1.3B / 14B) and WAN 2.2 5B TI2V text-to-video: flow noise (shift 8, multiplier 1000),
video latents (B, C, frames, h, w), text through cross-attention (nodes/cross_capture.py), context
= 512 umT5 tokens; real CFG.

Only the plain text-to-video networks: `model_base.WAN21` / `WAN22` themselves with as many input
as output channels. Image-to-video and first/last-frame models (extra input channels, CLIP-vision
keys), VACE, camera, Animate, S2V, HuMo and the other subclasses are refused (refusals.py). WAN
2.2 14B's two experts are each a WAN21 MODEL: one expert edits on its own like any WAN 2.1 model.
"""
import torch

import comfy.text_encoders.wan

from ...ledits_core import FLOW, concept_token_positions
from .. import dit_capture
from ..cross_capture import CrossCaptureRequest, token_grid
from .base import Family


class WanFamily(Family):
    name = "WAN 2.1 / WAN 2.2 5B (text-to-video)"
    host_classes = ("WAN21", "WAN22")
    form = FLOW
    clips = True                # latents (B, C, frames, h, w) with any number of frames

    def extra_input_channels(self, diffusion_model):
        """Image-to-video / control variants concatenate image and mask channels to the latent."""
        channels_in, channels_out = getattr(diffusion_model, "in_dim", None), getattr(diffusion_model, "out_dim", None)
        if channels_in is None or channels_in == channels_out:
            return None
        return channels_in

    def unsupported_variant(self, diffusion_model):
        """WAN21/WAN22 networks that condition on more than the text: extra input channels (image-to-
        video, first/last frame, Fun control), CLIP-vision keys (I2V) or a reference image."""
        extra = self.extra_input_channels(diffusion_model)
        if (extra is None and getattr(diffusion_model, "model_type", "t2v") == "t2v"
                and getattr(diffusion_model, "img_emb", None) is None
                and getattr(diffusion_model, "ref_conv", None) is None):
            return None
        what = f"{extra} input channels: the latent plus image and mask channels" if extra else \
            "it attends to a conditioning image"
        return (f"is not supported: it is an image-to-video / control variant of WAN ({what}); LEDITS++ edits "
                "clips with WAN's plain text-to-video models")

    def joint_blocks(self, diffusion_model):
        """The "dit" replace sites of the blocks, in run order (the capture labels them)."""
        return [("double_block", i) for i in range(len(diffusion_model.blocks))]

    def default_blocks(self, diffusion_model):
        """The last two thirds of the blocks (1.3B and 5B: 10-29 of 30; 14B: 13-39 of 40). No
        study of WAN's cross-attention maps exists yet; this is the rule measured for MMDiTs
        (bench/dit_block_study.md: as good as all blocks, the first block localises worst), which
        also holds for UNet-style cross-attention where the early layers carry layout rather than
        words. The capture costs ~2 % of a block per concept, so 'all' is affordable too."""
        n = len(diffusion_model.blocks)
        return range(round(n / 3), n)

    def context_width(self, model):
        return model.model.diffusion_model.text_dim

    def zero_conditioning(self, model):
        network = model.model.diffusion_model
        return [[torch.zeros(1, network.text_len, network.text_dim), {}]]

    def concept_layout(self, clip, tokens):
        """Context = the umT5 tokens: no BOS, the text, EOS (1), padding (0) up to 512."""
        if not isinstance(clip.cond_stage_model, comfy.text_encoders.wan.WanT5Model):
            return None
        stream = tokens["umt5xxl"]
        return concept_token_positions(stream, chunk_length=None), sum(len(chunk) for chunk in stream)

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        """Maps on the token grid (frames, h/2, w/2) of a latent of size (frames, H, W); given the
        spatial size (H, W) only, the frames are counted from the video tokens of each call."""
        patch = tuple(diffusion_model.patch_size)[-len(latent_size):]
        return CrossCaptureRequest(concepts, token_grid(latent_size, patch))

    def install_capture(self, model_options, diffusion_model, config):
        return dit_capture.install_capture(model_options, self, diffusion_model, config)


WAN = WanFamily()
