"""The model families LEDITS++ runs on: one module each, saying only what differs for it (base.py
holds what they share, refusals.py what is refused and why). Adding a family is one module here,
one entry in FAMILIES, plus tests; an attention adapter only if its attention is not joint
[text; image] or UNet cross-attention.
"""
from .base import Family, JointDiTFamily
from .chroma import CHROMA
from .flux import FLUX
from .flux2 import FLUX2
from .hidream import HIDREAM
from .lumina2 import LUMINA2
from .qwen_image import QWEN_IMAGE
from .refusals import check_conditioning, refusal
from .sd3 import SD3
from .unet import UNET
from .wan import WAN

FLUX_DEFAULT_GUIDANCE = 3.5     # what ComfyUI's Flux uses when no FluxGuidance is set

# Every family this pack knows, in matching order; those whose model class this host lacks drop out.
ALL_FAMILIES = (UNET, SD3, FLUX, QWEN_IMAGE, CHROMA, FLUX2, HIDREAM, LUMINA2, WAN)
FAMILIES = tuple(family for family in ALL_FAMILIES if family.available)
SUPPORTED = "; ".join(family.name for family in FAMILIES)


def family_of(model):
    """The family of a MODEL (ModelPatcher), or None when LEDITS++ does not support it."""
    if getattr(model, "model", None) is None or getattr(model.model, "diffusion_model", None) is None:
        return None
    for family in FAMILIES:
        if family.matches(model):
            return family
    return None


def check_model(model, node):
    """The model's family; a clear error (what the model is, what works) unless supported."""
    family = family_of(model)
    if family is None:
        raise refusal(model, FAMILIES, node)
    return family


def concept_layout(clip, tokens):
    """(token positions, context length) of a concept, from the first family that knows its text
    encoder; plain CLIP chunks (SD1.x/SD2.x/SDXL) otherwise."""
    for family in FAMILIES:
        if family is not UNET:
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


__all__ = ["ALL_FAMILIES", "CHROMA", "FAMILIES", "FLUX", "FLUX2", "Family", "HIDREAM", "JointDiTFamily",
           "LUMINA2", "QWEN_IMAGE", "SD3", "SUPPORTED", "UNET", "WAN", "check_conditioning", "check_model",
           "concept_layout", "distilled_guidance", "family_of", "with_guidance"]
