"""Kept sigmas for inversion and replay.

Every schedule returns N+1 descending sigmas for N kept steps: step i goes sigmas[i] -> sigmas[i+1].
`sigma_table` is the model's training table (ComfyUI `model_sampling.sigmas`), ascending in the
integer timestep t, so sigma(t) = sigma_table[t].
"""
import math

import torch


def _check_skip(skip):
    if not (isinstance(skip, (int, float)) and math.isfinite(skip) and 0.0 <= skip < 1.0):
        raise ValueError(f"skip must be a fraction in [0, 1) (0.15 skips the noisiest 15 %); got {skip!r}")


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")


def _check_table(sigma_table):
    if not torch.is_tensor(sigma_table) or sigma_table.ndim != 1 or sigma_table.numel() < 2:
        raise ValueError("sigma_table must be a 1-D tensor of the model's training sigmas")
    if not bool((sigma_table[1:] > sigma_table[:-1]).all()) or not bool((sigma_table > 0).all()):
        raise ValueError("sigma_table must be positive and ascending in the timestep")


def exact_sigmas(sigma_table, steps, skip=0.0):
    """The official repository's linspace timesteps, ending at sigma(t=0) instead of 0.

    t_j = int(linspace(T - skip*T - 1, 1, N)); the last step targets the clean latent at the
    smallest training sigma. Because no step goes to sigma = 0, inversion and replay take the
    same second-order step everywhere and the replay returns the input exactly (for any N >= 1,
    unlike the official code, which is exact only for N >= 15).
    """
    _check_steps(steps)
    _check_skip(skip)
    _check_table(sigma_table)
    T = sigma_table.numel()
    start = T - skip * T - 1
    t = torch.linspace(start, 1, steps, dtype=torch.float64).to(torch.int64)
    if steps > 1 and not bool((t[1:] < t[:-1]).all()):
        raise ValueError(f"{steps} steps do not fit into the {int(start)} timesteps left after "
                         f"skip={skip}; use fewer steps or a smaller skip")
    return torch.cat([sigma_table[t], sigma_table[:1]]).clone()


def diffusers_sigmas(sigma_table, steps, skip=0.15):
    """diffusers LEDITS++ grid: DPM 'leading' spacing over int(N*(1+skip)) steps, keep the last N,
    final sigma 0.

    Matches LEditsPPPipeline* timesteps (e.g. N=30, skip=0.15 -> 841, 813, ..., 29). The last
    step lands on D(x_tmin), not on the input, so reconstruction is not exact (as in diffusers).
    """
    _check_steps(steps)
    _check_skip(skip)
    _check_table(sigma_table)
    T = sigma_table.numel()
    total = int(steps * (1 + skip))
    ratio = T // (total + 1)
    if ratio < 1:
        raise ValueError(f"{steps} steps with skip={skip} exceed the model's {T} timesteps")
    t = torch.tensor([(steps - j) * ratio + 1 for j in range(steps)], dtype=torch.int64)
    return torch.cat([sigma_table[t], sigma_table.new_zeros(1)]).clone()


def custom_sigmas(sigmas, skip=0.0, final_sigma=None):
    """User SIGMAS with the noisiest floor(M*skip) of its M steps dropped.

    With `final_sigma` (the model's smallest training sigma), a final 0 is replaced by
    min(final_sigma, previous/2) so that the schedule reconstructs exactly; without it a final 0
    is kept and the last step returns D, as diffusers does.
    """
    _check_skip(skip)
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError("SIGMAS must be a 1-D tensor with at least 2 values (1 step)")
    s = sigmas.detach().float().cpu()
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("SIGMAS must be finite and non-negative")
    if not bool((s[1:] < s[:-1]).all()):
        raise ValueError("SIGMAS must be strictly descending (a scheduler's output, not flipped)")
    if bool((s[:-1] == 0).any()):
        raise ValueError("only the last sigma may be 0")
    steps = s.numel() - 1
    drop = int(steps * skip)
    kept = s[drop:].clone()
    if final_sigma is not None and float(kept[-1]) == 0.0:
        kept[-1] = min(float(final_sigma), 0.5 * float(kept[-2]))
    return kept


def kept_steps(sigmas):
    """Number of solver steps in a kept-sigma list."""
    return int(sigmas.numel()) - 1


def below_pure_noise(sigmas, max_sigma, first_sigma):
    """A schedule whose first sigma reaches `max_sigma` (a flow model's sigma = 1: alpha = 0, pure
    noise, infinite half-log-SNR) starts at `first_sigma` instead, as ComfyUI's SDE samplers do
    (`offset_first_sigma_for_snr`: model_sampling.percent_to_sigma(1e-4)). Other schedules are
    returned unchanged."""
    if float(sigmas[0]) < max_sigma:
        return sigmas
    if len(sigmas) > 1 and not float(sigmas[1]) < first_sigma < max_sigma:
        raise ValueError(f"cannot start the schedule at {first_sigma}: its second sigma is {float(sigmas[1])}")
    out = sigmas.clone()
    out[0] = first_sigma
    return out
