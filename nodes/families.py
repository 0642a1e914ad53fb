"""The model families LEDITS++ runs on, each in one class: everything that differs between them.

A family says whether a MODEL belongs to it, how its latents are noised (VE: alpha = 1; FLOW:
alpha = 1 - sigma), which adapter records the concepts' attention (UNet cross-attention sites,
nodes/unet_capture.py; DiT joint attention, nodes/dit_capture.py), what the unconditional
prediction is when no `negative` is connected, how wide its text context is, how its CLIP lays out
a concept's tokens, and whether it is guidance-distilled (Flux dev). Adding a family (Qwen-Image,
HiDream, Chroma, ...) is one class here plus tests, and an adapter only if its attention differs.
"""
import torch

import comfy.model_base
import comfy.model_sampling
import comfy.text_encoders.flux
import comfy.text_encoders.sd3_clip

from ..ledits_core import FLOW, VE, attention_grid, concept_token_positions
from . import dit_capture, unet_capture
from .capture import CONFIG_KEY
from .unet_capture import UNetCaptureRequest

SUPPORTED = ("SD1.x, SD2.x (eps or v-prediction) and SDXL UNets, SD3 / SD3.5 (MMDiT) and Flux.1 "
             "(dev, schnell, Krea)")
FLUX_DEFAULT_GUIDANCE = 3.5     # what ComfyUI's Flux uses when no FluxGuidance is set


def extra_input_channels(diffusion_model):
    """The input channels of an inpainting / fill / instruct variant, which concatenates image and
    mask channels to the latent (in != out), else None. Flux keeps its channels in `.params`."""
    params = getattr(diffusion_model, "params", diffusion_model)
    channels_in, channels_out = getattr(params, "in_channels", None), getattr(params, "out_channels", None)
    if None in (channels_in, channels_out) or channels_in == channels_out:
        return None
    return channels_in


class Family:
    """What every family does the same way through its adapter's install_capture."""

    def patch_model(self, model, config):
        """A clone of the ModelPatcher with the capture in its model_options and `config` for the
        edit (the AttentionCapture node); the given MODEL is left untouched."""
        clone = model.clone()
        clone.model_options = self.install_capture(clone.model_options, model.model.diffusion_model, config)
        clone.model_options["transformer_options"][CONFIG_KEY] = config
        return clone


class UNetFamily(Family):
    name = "UNet (SD1.x / SD2.x / SDXL)"
    form = VE

    def matches(self, model):
        sampling = model.get_model_object("model_sampling")
        return (isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete)
                and not isinstance(sampling, comfy.model_sampling.StableCascadeSampling)
                and isinstance(sampling, comfy.model_sampling.EPS)
                and not isinstance(sampling, (comfy.model_sampling.X0, comfy.model_sampling.EDM))
                and type(model.model.diffusion_model).__name__ == "UNetModel"
                and extra_input_channels(model.model.diffusion_model) is None)

    def context_width(self, model):
        return model.model.model_config.unet_config.get("context_dim")

    def zero_conditioning(self, model):
        """Zeros (tokens and pooled): the unconditional input diffusers uses for SDXL."""
        config = model.model.model_config.unet_config
        extras = {}
        if isinstance(model.model, comfy.model_base.SDXL):
            extras["pooled_output"] = torch.zeros(1, config["adm_in_channels"] - 6 * 256)
        elif config.get("adm_in_channels"):
            raise ValueError("LEDITS++: this model needs extra conditioning; connect a `negative` "
                             "CONDITIONING (e.g. CLIP Text Encode with an empty prompt)")
        return [[torch.zeros(1, 77, self.context_width(model)), extras]]

    def distilled_guidance(self, model):
        return False

    def concept_layout(self, clip, tokens):
        """CLIP: 77-token chunks of one stream (SDXL's two encoders share positions)."""
        stream = tokens["l"] if "l" in tokens else next(iter(tokens.values()))
        return concept_token_positions(stream), 77 * len(stream)

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        return UNetCaptureRequest(concepts, latent_size, config)

    def install_capture(self, model_options, diffusion_model, config):
        return unet_capture.install_capture(model_options, diffusion_model, config)


class JointDiTFamily(Family):
    """Flow-matching DiTs with joint [text; image] attention (nodes/dit_capture.py)."""
    form = FLOW
    base_class = None

    def matches(self, model):
        return type(model.model) is self.base_class

    def joint_blocks(self, diffusion_model):
        """("double_block" | "single_block", i) of every joint-attention block, in run order."""
        raise NotImplementedError

    def default_blocks(self, diffusion_model):
        """The blocks "auto" averages (bench/dit_block_study.md)."""
        raise NotImplementedError

    def distilled_guidance(self, model):
        return False

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        patch = int(diffusion_model.patch_size)
        return dit_capture.JointCaptureRequest(concepts, attention_grid(latent_size, patch))

    def install_capture(self, model_options, diffusion_model, config):
        return dit_capture.install_capture(model_options, self, diffusion_model, config)


class SD3Family(JointDiTFamily):
    name = "SD3 / SD3.5 (MMDiT)"
    base_class = comfy.model_base.SD3

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


class FluxFamily(JointDiTFamily):
    name = "Flux.1 (dev / schnell / Krea)"
    base_class = comfy.model_base.Flux

    def matches(self, model):
        return super().matches(model) and extra_input_channels(model.model.diffusion_model) is None

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
        if not isinstance(clip.cond_stage_model, comfy.text_encoders.flux.FluxClipModel):
            return None
        stream = tokens["t5xxl"]
        return concept_token_positions(stream, chunk_length=None), sum(len(chunk) for chunk in stream)


UNET, SD3, FLUX = UNetFamily(), SD3Family(), FluxFamily()
FAMILIES = (UNET, SD3, FLUX)


def family_of(model):
    """The family of a MODEL (ModelPatcher), or None when LEDITS++ does not support it."""
    if getattr(model, "model", None) is None or getattr(model.model, "diffusion_model", None) is None:
        return None
    for family in FAMILIES:
        if family.matches(model):
            return family
    return None


def concept_layout(clip, tokens):
    """(token positions, context length) of a concept, from the first family that knows its CLIP;
    plain CLIP chunks (SD1.x/SD2.x/SDXL) otherwise."""
    for family in (SD3, FLUX):
        layout = family.concept_layout(clip, tokens)
        if layout is not None:
            return layout
    return UNET.concept_layout(clip, tokens)


def with_guidance(conditioning, guidance):
    """CONDITIONING with every entry at distilled guidance `guidance` (None: unchanged)."""
    if guidance is None:
        return conditioning
    return [[tensor, dict(extras, guidance=guidance)] for tensor, extras in conditioning]


def distilled_guidance(family, model, value, *conditionings):
    """The distilled guidance of every prediction of a guidance-distilled model (Flux dev), None
    for other models: `value` when >= 0, else what a FluxGuidance node put on the first
    conditioning that has one, else 3.5."""
    if not family.distilled_guidance(model):
        return None
    if value >= 0:
        return float(value)
    for conditioning in conditionings:
        for _, extras in conditioning or ():
            if extras.get("guidance") is not None:
                return float(extras["guidance"])
    return FLUX_DEFAULT_GUIDANCE
