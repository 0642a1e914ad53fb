"""Checks and facts about the host MODEL: is it a UNet LEDITS++ can run, and its sigma table."""
import weakref

import torch

import comfy.model_base
import comfy.model_sampling

SUPPORTED = "SD1.x, SD2.x (eps or v-prediction) and SDXL UNet checkpoints"


def check_model(model, node):
    """Raise a clear error unless `model` is a discrete-schedule eps/v UNet (SD1.x/SD2.x/SDXL)."""
    base = getattr(model, "model", None)
    sampling = model.get_model_object("model_sampling") if base is not None else None
    unet = getattr(base, "diffusion_model", None)
    ok = (
        sampling is not None
        and isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete)
        and not isinstance(sampling, comfy.model_sampling.StableCascadeSampling)
        and isinstance(sampling, comfy.model_sampling.EPS)
        and not isinstance(sampling, (comfy.model_sampling.X0, comfy.model_sampling.EDM))
        and type(unet).__name__ == "UNetModel"
    )
    if not ok:
        kind = type(base).__name__ if base is not None else type(model).__name__
        mtype = getattr(getattr(base, "model_type", None), "name", "unknown")
        raise ValueError(
            f"{node}: this MODEL ({kind}, {mtype}) is not supported yet. LEDITS++ needs {SUPPORTED}; "
            "flow-matching and MMDiT/DiT models (SD3, Flux, ...) are not supported yet.")


def sigma_table(model):
    """The model's training sigmas, ascending in the timestep (float32, CPU)."""
    return model.get_model_object("model_sampling").sigmas.detach().float().cpu()


def model_name(model):
    base = model.model
    return f"{type(base).__name__}/{type(base.model_config).__name__}"


def zero_conditioning(model):
    """A CONDITIONING of zeros (tokens and pooled), the unconditional input diffusers uses for SDXL.

    Used when no `negative` is connected, so the inversion and the edit always share one."""
    config = model.model.model_config.unet_config
    context_dim = config.get("context_dim")
    extras = {}
    if isinstance(model.model, comfy.model_base.SDXL):
        extras["pooled_output"] = torch.zeros(1, config["adm_in_channels"] - 6 * 256)
    elif config.get("adm_in_channels"):
        raise ValueError("LEDITS++: this model needs extra conditioning; connect a `negative` "
                         "CONDITIONING (e.g. CLIP Text Encode with an empty prompt)")
    return [[torch.zeros(1, 77, context_dim), extras]]


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
