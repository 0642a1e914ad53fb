"""What LEDITS++ refuses, and why, in one place: the error says what the MODEL is and names the
families that work (derived from the registered families, never typed here)."""

# comfy.model_base classes of the video models LEDITS++ does not edit yet (LTX, HunyuanVideo, ...).
VIDEO_CLASSES = ("LTXV", "LTXAV", "HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V",
                 "HunyuanVideo15", "CosmosVideo", "GenmoMochi", "SVD_img2vid", "CogVideoX", "Kandinsky5")
# Image-to-image models whose input is the photo itself (instruct / edit): nothing to invert.
INSTRUCT_CLASSES = ("SD15_instructpix2pix", "SDXL_instructpix2pix", "IP2P")


def _video_model(base):
    return any(cls.__name__ in VIDEO_CLASSES for cls in type(base).__mro__)


def _wan_variant(base):
    """A subclass of WAN21 (VACE, camera, Animate, S2V, HuMo, ...): more conditioning than the text."""
    return type(base).__name__ not in ("WAN21", "WAN22") and any(c.__name__ == "WAN21" for c in type(base).__mro__)


def refusal(model, families, node):
    """The error for a MODEL no family accepts."""
    base = getattr(model, "model", None)
    kind = type(base).__name__ if base is not None else type(model).__name__
    mtype = getattr(getattr(base, "model_type", None), "name", "unknown")
    why = "is not supported yet"
    if base is not None and _wan_variant(base):
        why = ("is not supported: it is a WAN variant that also conditions on images, video, pose or audio (VACE, "
               "camera, Animate, S2V, HuMo, ...); LEDITS++ edits clips with WAN's plain text-to-video models")
    elif base is not None and _video_model(base):
        why = "is not supported yet: it is a video model LEDITS++ does not edit yet"
    elif base is not None and any(c.__name__ in INSTRUCT_CLASSES for c in type(base).__mro__):
        why = ("is not supported: it is an instruct (image-to-image) variant, which takes the photo as "
               "input instead of editing an inversion")
    else:
        for family in families:
            if base is not None and family.is_member(model):
                why = family.unsupported_variant(base.diffusion_model) or why
                break
    supported = "; ".join(f.name for f in families)
    return ValueError(f"{node}: this MODEL ({kind}, {mtype}) {why}. LEDITS++ runs on {supported}.")


def check_conditioning(conditioning, node):
    """Reference images (ReferenceLatent, Flux Kontext, Qwen-Image-Edit, Flux.2 references) add
    tokens that the inverted photo does not have: LEDITS++ edits the photo itself, so such
    conditioning is refused."""
    for _, extras in conditioning or ():
        if extras.get("reference_latents"):
            raise ValueError(
                f"{node}: a CONDITIONING carries reference images (ReferenceLatent, Kontext, Qwen-Image-Edit "
                "or Flux.2 reference editing). LEDITS++ edits the inverted photo itself and does not take "
                "reference images: encode the prompt with a plain text encode node (no image, no "
                "ReferenceLatent) for its `negative`/`positive`")
        if extras.get("concat_latent_image") is not None:     # HiDream E1: the model's image_cond
            raise ValueError(
                f"{node}: a CONDITIONING carries an image that the model takes next to the latent "
                "(InstructPixToPixConditioning, as HiDream E1's instruct editing uses it, joined along the width; "
                "InpaintModelConditioning; image-to-video). LEDITS++ edits the inverted photo itself with a "
                "text-to-image model (HiDream I1, not E1): encode the prompt with a plain text encode node for "
                "its `negative`/`positive`")
        if extras.get("time_dim_concat") is not None or extras.get("context_latents"):
            raise ValueError(
                f"{node}: a CONDITIONING carries reference frames that WAN appends to the clip's own "
                "(WanPhantomSubjectToVideo, in-context latents). LEDITS++ edits the inverted clip itself: encode "
                "the prompt with a plain text encode node for its `negative`/`positive`")
