"""What every model family shares; each family module (unet.py, sd3.py, flux.py, ...) says only what
differs for it.

A family says whether a MODEL belongs to it, how its latents are noised (VE: alpha = 1; FLOW:
alpha = 1 - sigma), which adapter records the concepts' attention (UNet cross-attention sites,
nodes/unet_capture.py; DiT joint attention, nodes/dit_capture.py), what the unconditional
prediction is when no `negative` is connected, how wide its text context is, how its text encoder
lays out a concept's tokens, and whether it is guidance-distilled (Flux dev).
"""
import comfy.model_base

from ...ledits_core import FLOW, attention_grid
from .. import dit_capture
from ..capture import CONFIG_KEY


def host_class(name):
    """comfy.model_base.<name>, or None on a host that does not have it (Flux2 is 0.33+)."""
    return getattr(comfy.model_base, name, None)


class Family:
    """What every family does the same way through its adapter's install_capture."""
    name = ""
    host_classes = ()           # comfy.model_base class names that are this family, exactly
    base_channels = None        # latent channels in = out of the plain model; more in = a fill variant
    clips = False               # latents (B, C, T, H, W) with any T (video); else images (frame latents: T = 1)
    weak_zero_negative = None   # why zeros edit badly as this family's unconditional: Inversion warns

    @property
    def available(self):
        """Whether this host has the family's model class (e.g. Flux.2 only on 0.33+)."""
        return any(host_class(name) is not None for name in self.host_classes)

    def is_member(self, model):
        """The MODEL's class is this family's (variants with extra input channels included)."""
        classes = [host_class(name) for name in self.host_classes]
        return type(model.model) in [c for c in classes if c is not None]

    def extra_input_channels(self, diffusion_model):
        """The input channels of an inpainting / fill / instruct variant (the latent concatenated
        with image and mask channels), else None."""
        params = getattr(diffusion_model, "params", diffusion_model)
        channels_in = getattr(params, "in_channels", None)
        channels_out = getattr(params, "out_channels", None)
        plain = self.base_channels(diffusion_model) if callable(self.base_channels) else channels_out
        if channels_in is None or plain is None or channels_in == plain:
            return None
        return channels_in

    def unsupported_variant(self, diffusion_model):
        """Why this member of the family's model class cannot be edited (the refusal's reason), or
        None for the plain model. Families with other variants extend it."""
        extra = self.extra_input_channels(diffusion_model)
        if extra is None:
            return None
        return (f"is not supported: it is an inpainting / fill variant of {self.name} ({extra} input channels: "
                "the latent plus image and mask channels); use the plain text-to-image model")

    def matches(self, model):
        return self.is_member(model) and self.unsupported_variant(model.model.diffusion_model) is None

    def distilled_guidance(self, model):
        """True for guidance-distilled models (a `guidance` value instead of real CFG)."""
        return False

    def concept_layout(self, clip, tokens):
        """(token positions, context length) of a concept encoded by this family's text encoder,
        or None when `clip` is not this family's."""
        return None

    def patch_model(self, model, config):
        """A clone of the ModelPatcher with the capture in its model_options and `config` for the
        edit (the AttentionCapture node); the given MODEL is left untouched."""
        clone = model.clone()
        clone.model_options = self.install_capture(clone.model_options, model.model.diffusion_model, config)
        clone.model_options["transformer_options"][CONFIG_KEY] = config
        return clone


class JointDiTFamily(Family):
    """Flow-matching DiTs with joint [text; image] attention (nodes/dit_capture.py)."""
    form = FLOW

    def joint_blocks(self, diffusion_model):
        """("double_block" | "single_block", i) of every joint-attention block, in run order."""
        raise NotImplementedError

    def default_blocks(self, diffusion_model):
        """The blocks "auto" averages (bench/dit_block_study.md)."""
        raise NotImplementedError

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        patch = int(diffusion_model.patch_size)
        return dit_capture.JointCaptureRequest(concepts, attention_grid(latent_size, patch))

    def install_capture(self, model_options, diffusion_model, config):
        return dit_capture.install_capture(model_options, self, diffusion_model, config)
