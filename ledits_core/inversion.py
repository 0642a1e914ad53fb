"""Edit-friendly inversion (noise maps z) and its replay.

Inversion: noise the clean latent independently at every kept sigma, x_i = alpha_i x0 + sigma_i eps_i
(alpha = 1 for VE models, 1 - sigma for flow models; the last step's target is x0 itself),
evaluate the denoiser on x_i and store the z that makes the shared solver step land exactly on
x_{i+1}. Replay runs the same step with the stored z's and any
denoiser; with the inversion's denoiser it returns x0 (up to float round-off).
"""
from dataclasses import dataclass

import torch

from .parametrization import VE
from .solver import plan_steps, solver_step, step_mean


@dataclass(frozen=True)
class Inversion:
    """Result of `invert`: start latent, noise maps in generation order, and the schedule."""
    x_T: torch.Tensor      # (B, C, H, W) float32: the noisiest auxiliary latent
    zs: torch.Tensor       # (N, B, C, H, W) float32: z used at generation step i
    sigmas: torch.Tensor   # (N + 1,) float32, descending

    @property
    def steps(self):
        return int(self.zs.shape[0])


def _check_latent(x0, name="latent"):
    if not torch.is_tensor(x0) or x0.ndim < 3:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor; got {getattr(x0, 'shape', type(x0))}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{name} contains NaN or Inf values; check the VAE encode / upstream nodes")


def draw_inversion_noise(shape, steps, seed):
    """steps independent N(0, I) draws of `shape` from a seeded CPU generator, in float32.

    Drawn lowest sigma first (as diffusers does) and returned in generation order, so that
    index i belongs to sigma_i and the start latent uses the last draw.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    draws = [torch.randn(tuple(shape), generator=gen, dtype=torch.float32) for _ in range(steps)]
    return torch.stack(draws[::-1])


def _auxiliary(x0, sigmas, noise, form, i):
    """x_i = alpha_i x0 + sigma_i eps_i; the clean latent itself after the last step."""
    if i == noise.shape[0]:
        return x0
    sigma = sigmas[i]
    return form.scale_clean(x0, float(sigma)) + sigma.to(device=x0.device, dtype=torch.float32) * noise[i]


def invert(denoise, x0, sigmas, noise, callback=None, form=VE):
    """Compute the noise maps z for `x0` along `sigmas` (N+1 values) with `noise` (N draws).

    `denoise(x, sigma, i)` returns the x0 estimate (the same function must be used in `replay`
    for an exact round trip). `callback(i, x_next, denoised)` is called after every step.
    """
    _check_latent(x0)
    plan = plan_steps(sigmas, form)
    n = len(plan)
    if noise.shape[0] != n or tuple(noise.shape[1:]) != tuple(x0.shape):
        raise ValueError(f"noise must have shape ({n}, {tuple(x0.shape)}); got {tuple(noise.shape)}")
    x0 = x0.float()
    noise = noise.to(device=x0.device, dtype=torch.float32)

    def auxiliary(i):
        return _auxiliary(x0, sigmas, noise, form, i)

    x = auxiliary(0)
    x_T = x.clone()
    zs, prev = [], None
    for i, coef in enumerate(plan):
        denoised = denoise(x, sigmas[i], i).float()
        mu = step_mean(coef, x, denoised, prev)
        if coef.to_zero:
            z = torch.zeros_like(x)
        else:
            z = (auxiliary(i + 1) - mu) / coef.noise_coef
        # Land where the replay will land (mu + c z), not on the ideal auxiliary latent: the next
        # denoiser call then sees bit for bit what the replay gives it.
        x = solver_step(coef, x, denoised, prev, z)
        zs.append(z)
        prev = denoised
        if callback is not None:
            callback(i, x, denoised)
    return Inversion(x_T=x_T, zs=torch.stack(zs), sigmas=sigmas.detach().float().cpu().clone())


def invert_batched(denoise_many, x0, sigmas, noise, chunk_steps, callback=None, form=VE):
    """`invert` with the denoiser calls of `chunk_steps` steps batched into one call.

    Every auxiliary latent is known up front, so the calls are independent: `denoise_many(xs,
    sigmas_per_row, steps)` gets the latents of several steps stacked along the batch axis. The
    z's are then computed from the ideal auxiliary latents, so the replay lands on them up to
    float round-off (instead of bit for bit, as in `invert`). Faster where the device has
    parallelism to spare; memory grows with chunk_steps.
    """
    _check_latent(x0)
    if chunk_steps < 1:
        raise ValueError("chunk_steps must be >= 1")
    plan = plan_steps(sigmas, form)
    n, batch = len(plan), x0.shape[0]
    if noise.shape[0] != n or tuple(noise.shape[1:]) != tuple(x0.shape):
        raise ValueError(f"noise must have shape ({n}, {tuple(x0.shape)}); got {tuple(noise.shape)}")
    x0 = x0.float()
    noise = noise.to(device=x0.device, dtype=torch.float32)
    sigma_values = sigmas.to(device=x0.device, dtype=torch.float32)
    auxiliary = [_auxiliary(x0, sigmas, noise, form, i) for i in range(n + 1)]
    denoised = [None] * n
    for start in range(0, n, chunk_steps):
        steps = list(range(start, min(n, start + chunk_steps)))
        xs = torch.cat([auxiliary[i] for i in steps])
        rows = torch.cat([sigma_values[i].expand(batch) for i in steps])
        out = denoise_many(xs, rows, steps).float()
        for j, i in enumerate(steps):
            denoised[i] = out[j * batch:(j + 1) * batch]
    zs = []
    for i, coef in enumerate(plan):
        mu = step_mean(coef, auxiliary[i], denoised[i], denoised[i - 1] if i else None)
        zs.append(torch.zeros_like(x0) if coef.to_zero else (auxiliary[i + 1] - mu) / coef.noise_coef)
        if callback is not None:
            callback(i, auxiliary[i + 1], denoised[i])
    return Inversion(x_T=auxiliary[0].clone(), zs=torch.stack(zs), sigmas=sigmas.detach().float().cpu().clone())


def replay(denoise, x_T, sigmas, zs, callback=None, form=VE):
    """Run the solver from x_T with the stored z's; returns the final latent (float32)."""
    _check_latent(x_T, "start latent")
    plan = plan_steps(sigmas, form)
    if zs.shape[0] != len(plan) or tuple(zs.shape[1:]) != tuple(x_T.shape):
        raise ValueError(f"the inversion has {zs.shape[0]} noise maps of shape {tuple(zs.shape[1:])}, "
                         f"but the replay has {len(plan)} steps on a latent of shape {tuple(x_T.shape)}")
    x = x_T.float()
    prev = None
    for i, coef in enumerate(plan):
        denoised = denoise(x, sigmas[i], i).float()
        x = solver_step(coef, x, denoised, prev, zs[i].to(device=x.device, dtype=torch.float32))
        prev = denoised
        if callback is not None:
            callback(i, x, denoised)
    return x
