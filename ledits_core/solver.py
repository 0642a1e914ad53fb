"""One DPM-Solver++(2M) SDE step (eta = 1, midpoint), shared by inversion and replay.

VE form (k-diffusion), with rho = sigma'/sigma, h = log(sigma/sigma'):
    x' = rho^2 x + (1 - rho^2) D  [+ (1 - rho^2)/(2r) (D - D_prev)]  +  sigma' sqrt(1 - rho^2) z
with r = h_prev/h. This is ComfyUI's `sample_dpmpp_2m_sde(eta=1, solver_type="midpoint")` and
diffusers' sde-dpmsolver++ order 2. A step into sigma' = 0 returns D (diffusers' final step).

The order is decided by the step index alone (first step first order, every later step second
order, the last one included), so inversion and replay can never disagree on it: that is what
makes the round trip exact. Coefficients are computed once per schedule in float64 on the host,
so the hot loop has no device syncs.
"""
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepCoefficients:
    x_coef: float       # rho^2
    d_coef: float       # 1 - rho^2
    diff_coef: float    # (1 - rho^2) / (2 r); 0 on the first (first-order) step
    noise_coef: float   # sigma' sqrt(1 - rho^2); 0 on a step into sigma' = 0
    to_zero: bool       # sigma' == 0: x' = D


def _sigma_list(sigmas):
    values = sigmas.detach().double().cpu().tolist() if torch.is_tensor(sigmas) else [float(s) for s in sigmas]
    if len(values) < 2:
        raise ValueError("a schedule needs at least 2 sigmas (1 step)")
    for a, b in zip(values, values[1:]):
        if not (math.isfinite(a) and math.isfinite(b)) or b >= a or b < 0 or a <= 0:
            raise ValueError(f"sigmas must be finite, positive and strictly descending "
                             f"(only the last may be 0); got {values}")
    return values


def plan_steps(sigmas):
    """Per-step coefficients for a descending sigma list of N+1 values -> list of N entries."""
    values = _sigma_list(sigmas)
    plan, h_prev = [], None
    for i, (s, s_next) in enumerate(zip(values, values[1:])):
        if s_next == 0:
            plan.append(StepCoefficients(0.0, 1.0, 0.0, 0.0, True))
            h_prev = None
            continue
        h = math.log(s) - math.log(s_next)
        d_coef = -math.expm1(-2 * h)
        diff_coef = 0.0 if i == 0 else 0.5 * d_coef * h / h_prev
        plan.append(StepCoefficients(math.exp(-2 * h), d_coef, diff_coef, s_next * math.sqrt(d_coef), False))
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
