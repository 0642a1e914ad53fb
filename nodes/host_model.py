"""Checks and facts about the host MODEL: its family (nodes/families.py) and its sigma table."""
import weakref

from .families import SUPPORTED, extra_input_channels, family_of


def check_model(model, node):
    """The model's family; a clear error unless LEDITS++ supports it."""
    family = family_of(model)
    if family is None:
        base = getattr(model, "model", None)
        kind = type(base).__name__ if base is not None else type(model).__name__
        mtype = getattr(getattr(base, "model_type", None), "name", "unknown")
        extra = extra_input_channels(getattr(base, "diffusion_model", None))
        if extra is not None:
            mtype += f", {extra} input channels: an inpainting / fill variant"
        raise ValueError(
            f"{node}: this MODEL ({kind}, {mtype}) is not supported. LEDITS++ runs on {SUPPORTED}; "
            "video, inpainting, instruct and other model families are not supported yet.")
    return family


def check_conditioning(conditioning, node):
    """Reference images (ReferenceLatent, Flux Kontext, image-edit models) add tokens that the
    inverted photo does not have: LEDITS++ edits the photo itself, so such conditioning is refused."""
    for _, extras in conditioning or ():
        if extras.get("reference_latents"):
            raise ValueError(
                f"{node}: a CONDITIONING carries reference images (ReferenceLatent / Kontext-style "
                "editing). LEDITS++ edits the inverted photo itself and does not take reference latents: "
                "remove the ReferenceLatent node from its `negative`/`positive`")


def sigma_table(model):
    """The model's training sigmas, ascending in the timestep (float32, CPU)."""
    return model.get_model_object("model_sampling").sigmas.detach().float().cpu()


def first_flow_sigma(model):
    """Where a flow schedule starts instead of sigma = 1 (pure noise), as ComfyUI's SDE samplers do."""
    return float(model.get_model_object("model_sampling").percent_to_sigma(1e-4))


def model_name(model):
    base = model.model
    return f"{type(base).__name__}/{type(base.model_config).__name__}"


def zero_conditioning(model):
    """The unconditional CONDITIONING used when no `negative` is connected (the family's zeros), so
    that the inversion and the edit always share one."""
    return check_model(model, "LEDITS++").zero_conditioning(model)


def check_inversion_matches(inversion, model, node, latent_shape=None):
    """An inversion only replays on the model and latent size it was made with."""
    if inversion.model_ref() is not model.model:
        raise ValueError(
            f"{node}: this inversion was made with another model ({inversion.model_name}); connect "
            "the same MODEL (or a patched clone of it) that went into LEDITS++ Inversion, or re-run "
            "the inversion with this model")
    if latent_shape is not None and tuple(latent_shape) != inversion.latent_shape:
        raise ValueError(
            f"{node}: the latent has shape {tuple(latent_shape)} but the inversion was made for "
            f"{inversion.latent_shape}; connect the inversion's own noisy_latent output")


def model_ref(model):
    return weakref.ref(model.model)
