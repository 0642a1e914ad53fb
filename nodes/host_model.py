"""Checks and facts about the host MODEL: its family (nodes/families/) and its sigma table."""
import weakref

from .families import check_conditioning, check_model  # noqa: F401  (re-exported for the nodes)


def sigma_table(model):
    """The model's training sigmas, ascending in the timestep (float32, CPU)."""
    return model.get_model_object("model_sampling").sigmas.detach().float().cpu()


def first_flow_sigma(model):
    """Where a flow schedule starts instead of sigma = 1 (pure noise), as ComfyUI's SDE samplers do."""
    return float(model.get_model_object("model_sampling").percent_to_sigma(1e-4))


def model_latent(model, samples, node):
    """The LATENT's samples in the model's layout: (B, C, H, W), or (B, C, T, H, W) for a model with
    frame latents (Qwen-Image's and WAN's format), where a 4-D latent gets its frame axis as the
    host's samplers give it. T = 1 unless the family edits clips."""
    frame_latents = getattr(model.get_model_object("latent_format"), "latent_dimensions", 2) == 3
    if frame_latents and samples.ndim == 4:
        samples = samples.unsqueeze(2)
    clips = check_model(model, node).clips
    if samples.ndim != (5 if frame_latents else 4) or (frame_latents and not clips and samples.shape[2] != 1):
        expected = "(B, C, T, H, W)" if clips else "(B, C, 1, H, W)" if frame_latents else "(B, C, H, W)"
        edits = "clips" if clips else "single images"
        raise ValueError(f"{node}: expected a latent {expected} (LEDITS++ edits {edits} with this model); got "
                         f"shape {tuple(samples.shape)}")
    return samples


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
