"""Inversion and replay as ComfyUI SAMPLER functions, run through the host's guider machinery.

Running inside `guider.sample` lets ComfyUI load the model, process conds (SDXL size vectors,
ControlNets, hooks), apply wrappers and clean up; the functions here only drive the shared
ledits_core solver. The step index is passed to the guider through transformer_options.

The host scales the latent on its way into and out of a sampler function (`noise_scaling` with
zero noise: x (1 - sigma_0) for flow models; `inverse_noise_scaling`: / (1 - sigma_last)); for
eps/v models both are the identity. The functions undo exactly that, so the inversion sees the
clean latent and the replay's output is the latent the solver reached.
"""
import logging

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview

from ..ledits_core import invert, invert_batched, replay
from .guider import STEP_KEY, LeditsGuider, check_interrupt
from .host_model import check_inversion_matches, check_model


def _denoiser(model, extra_args):
    """denoise(x, sigma, i) for ledits_core, calling the host's wrapped model at step i."""
    extra_args = dict(extra_args or {})
    base_options = extra_args.pop("model_options", {})

    def denoise(x, sigma, i):
        check_interrupt()
        options = dict(base_options)
        transformer = dict(options.get("transformer_options", {}))
        transformer[STEP_KEY] = i
        options["transformer_options"] = transformer
        sigma = sigma * x.new_ones([x.shape[0]]) if sigma.ndim == 0 else sigma
        return model(x, sigma, model_options=options, **extra_args)
    return denoise


def _model_sampling(model):
    return model.inner_model.model_patcher.get_model_object("model_sampling")


def _form(model):
    return check_model(model.inner_model.model_patcher, "LEDITS++").form


def _host_scale(model, sigma, inverse):
    """The factor the host's (inverse_)noise_scaling applies to a latent at `sigma`, or None when 1."""
    sampling = _model_sampling(model)
    one = torch.ones(1, 1, 1, 1)
    sigma = sigma.detach().float().cpu().reshape(1)
    out = sampling.inverse_noise_scaling(sigma, one) if inverse else \
        sampling.noise_scaling(sigma, torch.zeros_like(one), one)
    factor = float(out.reshape(-1)[0])
    return None if factor == 1.0 else factor


def _clean_input(model, x, sigmas):
    """The clean latent the host scaled on its way in (its own copy when it kept one)."""
    scale = _host_scale(model, sigmas[0], inverse=False)
    if scale is None:
        return x
    latent = getattr(model, "latent_image", None)
    return latent if latent is not None and latent.shape == x.shape else x / scale


def _host_output(model, x, sigmas):
    """What to return so that the host's inverse_noise_scaling gives back `x`."""
    scale = _host_scale(model, sigmas[-1], inverse=True)
    return x if scale is None else x / scale


def _progress(callback, sigmas):
    if callback is None:
        return None
    return lambda i, x, d: callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i],
                                     "denoised": d})


def _batched_denoiser(model, extra_args):
    """denoise_many(xs, sigma_per_row, steps): several steps' latents in one model call."""
    denoise = _denoiser(model, extra_args)
    return lambda xs, rows, steps: denoise(xs, rows, steps[0])


def steps_that_fit(model, x, batch_steps):
    """Cap a batched inversion's steps per call so one call fits in free memory, by the host's own
    estimate (the test ComfyUI applies before batching conds: memory_required x 1.5 < free)."""
    base_model = getattr(getattr(model, "inner_model", None), "inner_model", None)
    if batch_steps <= 1 or not hasattr(base_model, "memory_required"):
        return batch_steps
    free = comfy.model_management.get_free_memory(x.device)
    steps = batch_steps
    while steps > 1 and base_model.memory_required([steps * x.shape[0], *x.shape[1:]]) * 1.5 >= free:
        steps -= 1
    return steps


def inversion_sampler(noise, holder, batch_steps=1):
    """A SAMPLER that inverts the clean latent it is given and returns the start latent x_T."""
    def sample_ledits_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None):
        progress = _progress(callback, sigmas)
        per_call = steps_that_fit(model, x, batch_steps)
        if per_call < batch_steps:
            logging.info("LEDITS++ Inversion: batch_steps %d -> %d to fit in free memory", batch_steps, per_call)
        x0, form = _clean_input(model, x, sigmas), _form(model)
        if per_call > 1:
            result = invert_batched(_batched_denoiser(model, extra_args), x0, sigmas, noise, per_call, progress,
                                    form=form)
        else:
            result = invert(_denoiser(model, extra_args), x0, sigmas, noise, progress, form=form)
        holder["inversion"] = result
        return _host_output(model, result.x_T, sigmas)
    return comfy.samplers.KSAMPLER(sample_ledits_inversion)


def replay_sampler(inversion, node="LEDITS++ Sampler"):
    """A SAMPLER that replays `inversion`'s noise maps from its start latent."""
    def sample_ledits_replay(model, x, sigmas, extra_args=None, callback=None, disable=None):
        check_inversion_matches(inversion, model.inner_model.model_patcher, node, x.shape)
        expected = inversion.sigmas
        if sigmas.shape != expected.shape or not torch.allclose(sigmas.float().cpu(), expected, rtol=1e-4, atol=1e-6):
            what = (f"({sigmas.numel() - 1} steps) differ from the inversion's ({expected.numel() - 1} steps)"
                    if sigmas.shape != expected.shape else f"differ from the inversion's ({expected.numel() - 1} "
                    "steps, other values: another scheduler, denoise or skip?)")
            raise ValueError(f"{node}: the SIGMAS {what}; connect the `sigmas` output of LEDITS++ Inversion")
        x_T = inversion.x_T.to(device=x.device)
        if not torch.allclose(_clean_input(model, x, sigmas).float(), x_T, rtol=1e-3, atol=1e-3):
            raise ValueError(
                f"{node}: the latent is not this inversion's start latent; connect LEDITS++ "
                "Inversion's `noisy_latent` output and use DisableNoise as the noise")
        zs = inversion.zs.to(device=x.device)
        # the exact stored start (the latent went through process_latent_out/in on its way here)
        out = replay(_denoiser(model, extra_args), x_T, sigmas, zs, _progress(callback, sigmas), form=_form(model))
        return _host_output(model, out, sigmas)
    return comfy.samplers.KSAMPLER(sample_ledits_replay)


def _run(guider, model, latent, sampler, sigmas, seed, steps):
    callback = latent_preview.prepare_callback(model, steps)
    samples = guider.sample(torch.zeros_like(latent), latent, sampler, sigmas, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return samples.to(comfy.model_management.intermediate_device())


def run_inversion(model, latent, sigmas, base, noise, seed, batch_steps=1):
    """Invert `latent` (outer space) -> (Inversion from ledits_core, noisy start latent, outer)."""
    holder = {}
    guider = LeditsGuider(model, base)
    noisy = _run(guider, model, latent, inversion_sampler(noise, holder, batch_steps), sigmas, seed,
                 len(sigmas) - 1)
    return holder["inversion"], noisy


def run_edit(model, inversion, concepts, base, guidance_rescale=0.0, record=True):
    """Replay `inversion` with LEDITS++ guidance -> (edited latent in outer space, guider)."""
    guider = LeditsGuider(model, base, concepts, guidance_rescale, record=record)
    start = model.model.process_latent_out(inversion.x_T.clone())
    edited = _run(guider, model, start, replay_sampler(inversion, "LEDITS++ Guided Edit"),
                  inversion.sigmas, inversion.seed, inversion.steps)
    return edited, guider
