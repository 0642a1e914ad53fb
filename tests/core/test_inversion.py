import math

import pytest
import torch

from ledits_core import (custom_sigmas, diffusers_sigmas, draw_inversion_noise, exact_sigmas,
                         invert, invert_batched, plan_steps, replay, solver_step)


def run_round_trip(toy, x0, sigmas, seed=0):
    denoise = lambda x, s, i: toy(x, s)
    noise = draw_inversion_noise(x0.shape, len(sigmas) - 1, seed)
    inv = invert(denoise, x0, sigmas, noise)
    out = replay(denoise, inv.x_T, inv.sigmas, inv.zs)
    return inv, out


SCHEDULES = {
    "exact": lambda table, n, skip: exact_sigmas(table, n, skip),
    "custom": lambda table, n, skip: custom_sigmas(
        torch.cat([table.flip(0)[:: max(1, 1000 // n)][:n], torch.zeros(1)]), skip,
        final_sigma=float(table[0])),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("steps", [2, 3, 15, 50])
@pytest.mark.parametrize("skip", [0.0, 0.15, 0.5])
@pytest.mark.parametrize("batch, h, w", [(1, 8, 8), (3, 6, 10)])
def test_exact_reconstruction(toy, latent, sigma_table, schedule, steps, skip, batch, h, w):
    x0 = latent(batch, h, w)
    sigmas = SCHEDULES[schedule](sigma_table, steps, skip)
    inv, out = run_round_trip(toy, x0, sigmas)
    assert inv.zs.shape == (len(sigmas) - 1, batch, 4, h, w)
    assert bool(torch.isfinite(inv.zs).all())
    err = (out - x0).abs().max().item()
    assert err <= 1e-4, f"{schedule} N={steps} skip={skip}: max abs error {err:.3g}"


@pytest.mark.parametrize("steps, skip", [(10, 0.15), (30, 0.15), (50, 0.15)])
def test_diffusers_schedule_is_not_exact_and_ends_at_D(toy, latent, sigma_table, steps, skip):
    """The diffusers grid ends at sigma 0: the last z is 0 and the output is D(x_tmin), so the
    input is not reconstructed (measured error documented here)."""
    x0 = latent(1, 8, 8)
    sigmas = diffusers_sigmas(sigma_table, steps, skip)
    inv, out = run_round_trip(toy, x0, sigmas)
    assert bool((inv.zs[-1] == 0).all())
    err = (out - x0).abs().max().item()
    print(f"diffusers-compatible schedule N={steps} skip={skip}: max abs error {err:.4f}")
    assert err > 1e-3
    # ...and equals the denoiser at the last kept sigma of the replayed trajectory
    noise = draw_inversion_noise(x0.shape, steps, 0)
    x_tmin = x0 + sigmas[-2] * noise[-1]
    assert torch.allclose(out, toy(x_tmin, sigmas[-2]), atol=1e-4)


def test_replay_reproduces_every_auxiliary_latent(toy, latent, sigma_table):
    x0 = latent(2, 8, 8)
    sigmas = exact_sigmas(sigma_table, 12, 0.2)
    noise = draw_inversion_noise(x0.shape, 12, 3)
    seen = []
    inv = invert(lambda x, s, i: toy(x, s), x0, sigmas, noise)
    replay(lambda x, s, i: toy(x, s), inv.x_T, inv.sigmas, inv.zs,
           callback=lambda i, x, d: seen.append(x.clone()))
    for i, x in enumerate(seen[:-1]):
        assert torch.allclose(x, x0 + sigmas[i + 1] * noise[i + 1], atol=1e-5)


def test_start_latent_uses_the_last_draw(latent, sigma_table, toy):
    x0 = latent(1, 8, 8)
    sigmas = exact_sigmas(sigma_table, 5, 0.1)
    gen = torch.Generator().manual_seed(7)
    draws = [torch.randn(x0.shape, generator=gen) for _ in range(5)]
    inv = invert(lambda x, s, i: toy(x, s), x0, sigmas, draw_inversion_noise(x0.shape, 5, 7))
    assert torch.equal(inv.x_T, x0 + sigmas[0] * draws[-1])


def test_z_maps_against_the_vp_formula(toy, latent, sigma_table):
    """Independent check of the z formula in diffusers' VP form (float64, alpha/s/lambda)."""
    x0 = latent(1, 6, 6).double()
    sigmas = exact_sigmas(sigma_table, 6, 0.1).double()
    noise = draw_inversion_noise(x0.shape, 6, 5).double()
    inv = invert(lambda x, s, i: toy(x.double(), s.double()), x0, sigmas.float(), noise.float())
    alpha = lambda s: 1 / math.sqrt(s * s + 1)
    n = len(sigmas) - 1
    aux_ve = [x0 + sigmas[i] * noise[i] for i in range(n)] + [x0]
    prev_m, prev_h = None, None
    for i in range(n):
        s, s2 = float(sigmas[i]), float(sigmas[i + 1])
        a, a2 = alpha(s), alpha(s2)
        st, st2 = s * a, s2 * a2
        x_vp = a * aux_ve[i]
        m = toy(aux_ve[i], torch.tensor(s, dtype=torch.float64))
        h = (-math.log(s2)) - (-math.log(s))
        mu = st2 / st * math.exp(-h) * x_vp + a2 * (1 - math.exp(-2 * h)) * m
        if prev_m is not None:
            r = prev_h / h
            mu = mu + 0.5 * a2 * (1 - math.exp(-2 * h)) * (m - prev_m) / r
        c = st2 * math.sqrt(1 - math.exp(-2 * h))
        z = (a2 * aux_ve[i + 1] - mu) / c
        assert torch.allclose(inv.zs[i].double(), z, atol=2e-4, rtol=1e-4), i
        prev_m, prev_h = m, h


def test_two_steps_by_hand():
    """sigmas 2 -> 1 -> 0.5: rho^2 = 1/4, h = log 2 both steps, r = 1."""
    plan = plan_steps(torch.tensor([2.0, 1.0, 0.5]))
    x0, d0, z0 = torch.tensor(1.0), torch.tensor(0.2), torch.tensor(0.3)
    x1 = solver_step(plan[0], x0, d0, None, z0)
    assert float(x1) == pytest.approx(0.25 * 1 + 0.75 * 0.2 + 1.0 * math.sqrt(0.75) * 0.3, abs=1e-6)
    d1, z1 = torch.tensor(-0.1), torch.tensor(0.7)
    x2 = solver_step(plan[1], x1, d1, d0, z1)
    expect = 0.25 * float(x1) + 0.75 * -0.1 + 0.5 * 0.75 * (-0.1 - 0.2) + 0.5 * math.sqrt(0.75) * 0.7
    assert float(x2) == pytest.approx(expect, abs=1e-6)
    final = plan_steps(torch.tensor([1.0, 0.0]))[0]
    assert final.to_zero and float(solver_step(final, x0, d0, None, z0)) == pytest.approx(0.2)


def test_matches_comfyui_dpmpp_2m_sde_form(toy, latent, sigma_table):
    """The step equals k-diffusion's sample_dpmpp_2m_sde (eta=1, midpoint) written out here."""
    x = latent(1, 6, 6)
    sigmas = exact_sigmas(sigma_table, 5, 0.0)
    zs = torch.randn(5, *x.shape, generator=torch.Generator().manual_seed(2))
    ours = replay(lambda x, s, i: toy(x, s), x, sigmas, zs)
    ref, old, h_last = x.clone(), None, None
    for i in range(5):
        d = toy(ref, sigmas[i])
        s, s2 = sigmas[i], sigmas[i + 1]
        h = (-s2.log()) - (-s.log())
        ref = s2 / s * (-h).exp() * ref + (-2 * h).expm1().neg() * d
        if old is not None:
            ref = ref + 0.5 * (-2 * h).expm1().neg() * (1 / (h_last / h)) * (d - old)
        ref = ref + zs[i] * s2 * (-2 * h).expm1().neg().sqrt()
        old, h_last = d, h
    assert torch.allclose(ours, ref, atol=1e-5)


def test_seeded_noise_is_deterministic():
    a = draw_inversion_noise((2, 4, 3, 5), 4, 11)
    assert torch.equal(a, draw_inversion_noise((2, 4, 3, 5), 4, 11))
    assert not torch.equal(a, draw_inversion_noise((2, 4, 3, 5), 4, 12))


def test_batch_images_are_independent(toy, latent, sigma_table):
    x0 = latent(3, 8, 8)
    sigmas = exact_sigmas(sigma_table, 6, 0.1)
    noise = draw_inversion_noise(x0.shape, 6, 0)
    full = invert(lambda x, s, i: toy(x, s), x0, sigmas, noise)
    one = invert(lambda x, s, i: toy(x, s), x0[1:2], sigmas, noise[:, 1:2])
    assert torch.allclose(full.zs[:, 1:2], one.zs, atol=1e-6)


def test_errors(toy, latent, sigma_table):
    x0 = latent(1, 8, 8)
    sigmas = exact_sigmas(sigma_table, 4, 0.1)
    noise = draw_inversion_noise(x0.shape, 4, 0)
    bad = x0.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(lambda x, s, i: toy(x, s), bad, sigmas, noise)
    with pytest.raises(ValueError, match="noise must have shape"):
        invert(lambda x, s, i: toy(x, s), x0, sigmas, noise[:3])
    inv = invert(lambda x, s, i: toy(x, s), x0, sigmas, noise)
    with pytest.raises(ValueError, match="noise maps"):
        replay(lambda x, s, i: toy(x, s), latent(1, 8, 6), inv.sigmas, inv.zs)
    with pytest.raises(ValueError, match="noise maps"):
        replay(lambda x, s, i: toy(x, s), inv.x_T, exact_sigmas(sigma_table, 5, 0.1), inv.zs)


@pytest.mark.parametrize("chunk", [1, 3, 50])
def test_batched_inversion_matches_and_reconstructs(toy, latent, sigma_table, chunk):
    x0 = latent(2, 6, 10)
    sigmas = exact_sigmas(sigma_table, 15, 0.15)
    noise = draw_inversion_noise(x0.shape, 15, 4)
    calls = []

    def many(xs, rows, steps):
        calls.append(len(steps))
        return toy(xs, rows[:, None, None, None])
    ref = invert(lambda x, s, i: toy(x, s), x0, sigmas, noise)
    got = invert_batched(many, x0, sigmas, noise, chunk)
    assert len(calls) == -(-15 // chunk)
    assert torch.allclose(got.zs, ref.zs, atol=1e-4) and torch.equal(got.x_T, ref.x_T)
    out = replay(lambda x, s, i: toy(x, s), got.x_T, got.sigmas, got.zs)
    assert (out - x0).abs().max().item() <= 1e-4
