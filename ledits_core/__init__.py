"""LEDITS++ in pure torch, in ComfyUI's k-diffusion parametrization.

x = alpha x0 + sigma * eps (alpha = 1: VE form of an eps/v model; alpha = 1 - sigma: flow
models), denoiser D(x, sigma) -> x0 estimate, sigmas descending. Nothing here imports ComfyUI,
so the same functions run in tests, in benchmarks and inside the host's sampler.
"""
from .parametrization import VE, FLOW, Parametrization
from .schedules import diffusers_sigmas, exact_sigmas, custom_sigmas, kept_steps, below_pure_noise
from .solver import StepCoefficients, plan_steps, step_mean, solver_step
from .inversion import Inversion, draw_inversion_noise, invert, invert_batched, replay
from .guidance import EditConcept, is_active, edit_direction, apply_edit_guidance, rescale_guidance
from .masks import (smoothing_kernel, smooth_attention, quantile_mask, attention_mask,
                    noise_mask, combine_masks, upsample_mask, with_frames, frame_quantile_mask, edited_region)
from .attention import (attention_grid, concept_attention, concept_attention_mass, AttentionAccumulator)
from .tokens import concept_token_positions

__all__ = [
    "VE", "FLOW", "Parametrization",
    "diffusers_sigmas", "exact_sigmas", "custom_sigmas", "kept_steps", "below_pure_noise",
    "StepCoefficients", "plan_steps", "step_mean", "solver_step",
    "Inversion", "draw_inversion_noise", "invert", "invert_batched", "replay",
    "EditConcept", "is_active", "edit_direction", "apply_edit_guidance", "rescale_guidance",
    "smoothing_kernel", "smooth_attention", "quantile_mask", "attention_mask", "noise_mask",
    "combine_masks", "upsample_mask", "with_frames", "frame_quantile_mask", "edited_region",
    "attention_grid", "concept_attention", "concept_attention_mass", "AttentionAccumulator",
    "concept_token_positions",
]
