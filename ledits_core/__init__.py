"""LEDITS++ in pure torch, in ComfyUI's k-diffusion parametrization.

x = x0 + sigma * eps (VE form of an eps/v model), denoiser D(x, sigma) -> x0 estimate,
sigmas descending. Nothing here imports ComfyUI, so the same functions run in tests, in
benchmarks and inside the host's sampler.
"""
from .schedules import diffusers_sigmas, exact_sigmas, custom_sigmas, kept_steps
from .solver import StepCoefficients, plan_steps, step_mean, solver_step
from .inversion import Inversion, draw_inversion_noise, invert, invert_batched, replay
from .guidance import EditConcept, is_active, edit_direction, apply_edit_guidance, rescale_guidance
from .masks import (smoothing_kernel, smooth_attention, quantile_mask, attention_mask,
                    noise_mask, combine_masks, upsample_mask)
from .attention import (attention_grid, concept_attention, AttentionAccumulator)
from .tokens import concept_token_positions

__all__ = [
    "diffusers_sigmas", "exact_sigmas", "custom_sigmas", "kept_steps",
    "StepCoefficients", "plan_steps", "step_mean", "solver_step",
    "Inversion", "draw_inversion_noise", "invert", "invert_batched", "replay",
    "EditConcept", "is_active", "edit_direction", "apply_edit_guidance", "rescale_guidance",
    "smoothing_kernel", "smooth_attention", "quantile_mask", "attention_mask", "noise_mask",
    "combine_masks", "upsample_mask",
    "attention_grid", "concept_attention", "AttentionAccumulator",
    "concept_token_positions",
]
