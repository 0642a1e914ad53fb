"""One DPM-Solver++(2M) SDE step (eta = 1, midpoint), shared by inversion and replay.

In half-log-SNR form (lambda = log(alpha/sigma), h = lambda' - lambda, r = h_prev/h):
    x' = (sigma'/sigma) e^-h x + alpha' (1 - e^-2h) D  [+ alpha' (1 - e^-2h)/(2r) (D - D_prev)]
         + sigma' sqrt(1 - e^-2h) z
(sigma'/sigma) e^-h = e^-2h alpha'/alpha. For VE models (alpha = 1) this is the k-diffusion step
rho^2 x + (1 - rho^2) D + ..., rho = sigma'/sigma; for flow models alpha = 1 - sigma. This is
ComfyUI's `sample_dpmpp_2m_sde(eta=1, solver_type="midpoint")` and diffusers' sde-dpmsolver++
order 2. A step into sigma' = 0 returns D (diffusers' final step).

The order is decided by the step index alone (first step first order, every later step second
order, the last one included), so inversion and replay can never disagree on it: that is what
makes the round trip exact. Coefficients are computed once per schedule in float64 on the host,
so the hot loop has no device syncs.
"""
import math
from dataclasses import dataclass

import torch

from .parametrization import VE


@dataclass(frozen=True)
class StepCoefficients:
    x_coef: float       # e^-2h alpha'/alpha  (VE: rho^2)
    d_coef: float       # alpha' (1 - e^-2h)  (VE: 1 - rho^2)
    diff_coef: float    # d_coef / (2 r); 0 on the first (first-order) step
    noise_coef: float   # sigma' sqrt(1 - e^-2h); 0 on a step into sigma' = 0
    to_zero: bool       # sigma' == 0: x' = D


def _sigma_list(sigmas, form=VE):
    values = sigmas.detach().double().cpu().tolist() if torch.is_tensor(sigmas) else [float(s) for s in sigmas]
    if len(values) < 2:
        raise ValueError("a schedule needs at least 2 sigmas (1 step)")
    for a, b in zip(values, values[1:]):
        if not (math.isfinite(a) and math.isfinite(b)) or b >= a or b < 0 or a <= 0:
            raise ValueError(f"sigmas must be finite, positive and strictly descending "
                             f"(only the last may be 0); got {values}")
    if values[0] >= form.max_sigma:
        raise ValueError(f"sigmas of a {form.name} model must stay below {form.max_sigma} "
                         f"(pure noise has no signal to invert); got {values[0]}")
    return values


def plan_steps(sigmas, form=VE):
    """Per-step coefficients for a descending sigma list of N+1 values -> list of N entries."""
    values = _sigma_list(sigmas, form)
    plan, h_prev = [], None
    for i, (s, s_next) in enumerate(zip(values, values[1:])):
        if s_next == 0:
            plan.append(StepCoefficients(0.0, 1.0, 0.0, 0.0, True))
            h_prev = None
            continue
        h = form.half_log_snr(s_next) - form.half_log_snr(s)
        one_minus = -math.expm1(-2 * h)
        alpha, alpha_next = form.alpha(s), form.alpha(s_next)
        d_coef = alpha_next * one_minus
        diff_coef = 0.0 if i == 0 else 0.5 * d_coef * h / h_prev
        plan.append(StepCoefficients(math.exp(-2 * h) * (alpha_next / alpha), d_coef, diff_coef,
                                     s_next * math.sqrt(one_minus), False))
        h_prev = h
    return plan


def step_mean(coef, x, denoised, prev_denoised=None):
    """Deterministic part mu of the step (everything but the noise term)."""
    if coef.to_zero:
        return denoised
    mu = coef.x_coef * x + coef.d_coef * denoised
    if coef.diff_coef != 0.0:
        if prev_denoised is None:
            raise ValueError("a second-order step needs the previous step's denoised estimate")
        mu = mu + coef.diff_coef * (denoised - prev_denoised)
    return mu


def solver_step(coef, x, denoised, prev_denoised, z):
    """x' = mu + c z; z may be None (deterministic step) and is ignored on a step into 0."""
    mu = step_mean(coef, x, denoised, prev_denoised)
    if coef.to_zero or z is None:
        return mu
    return mu + coef.noise_coef * z
