"""Flow-matching (CONST) models: the alpha/sigma form of the shared step, exact inversion, and the
joint-attention mass of DiTs. Facts from ComfyUI: x_sigma = (1 - sigma) x0 + sigma eps, lambda =
-logit(sigma), SD3's shift-3 grid (time_snr_shift) and Flux's (flux_time_shift)."""
import math

import pytest
import torch

from ledits_core import (FLOW, VE, below_pure_noise, concept_attention, concept_attention_mass,
                         custom_sigmas, draw_inversion_noise, exact_sigmas, invert, invert_batched,
                         plan_steps, replay, solver_step)


def sd3_table(shift=3.0, timesteps=1000):
    t = torch.arange(1, timesteps + 1, dtype=torch.float64) / timesteps
    return (shift * t / (1 + (shift - 1) * t)).float()


def flux_table(mu=1.15, timesteps=10000):
    t = torch.arange(1, timesteps + 1, dtype=torch.float64) / timesteps
    return (math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)).float()


TABLES = {"sd3": sd3_table, "flux": flux_table}


class ToyFlow:
    """A smooth stand-in for a flow model: velocity v(x, sigma), D = x - sigma v."""

    def __init__(self, channels=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(channels, channels, generator=g) * 0.4

    def __call__(self, x, sigma):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        mix = torch.einsum("oc,bchw->bohw", self.w.to(x.dtype), x)
        v = torch.tanh(mix) + 0.2 * x.roll(1, dims=-1) * (1 - sigma)
        return x - sigma * v


def flow_sigmas(table, steps, skip):
    kept = exact_sigmas(table, steps, skip)
    return below_pure_noise(kept, FLOW.max_sigma, float(table[-10]))


@pytest.mark.parametrize("family", sorted(TABLES))
@pytest.mark.parametrize("steps", [2, 15])
@pytest.mark.parametrize("skip", [0.0, 0.15])
@pytest.mark.parametrize("batched", [False, True])
def test_flow_exact_reconstruction(family, steps, skip, batched):
    g = torch.Generator().manual_seed(steps)
    x0 = torch.randn(2, 16, 6, 10, generator=g)
    toy = ToyFlow()
    sigmas = flow_sigmas(TABLES[family](), steps, skip)
    assert float(sigmas[0]) < 1.0 and float(sigmas[-1]) > 0.0
    noise = draw_inversion_noise(x0.shape, steps, 5)
    denoise = lambda x, s, i: toy(x, s)
    if batched:
        inv = invert_batched(lambda xs, rows, st: toy(xs, rows), x0, sigmas, noise, 3, form=FLOW)
    else:
        inv = invert(denoise, x0, sigmas, noise, form=FLOW)
    assert torch.allclose(inv.x_T, (1 - sigmas[0]) * x0 + sigmas[0] * noise[0], atol=1e-6)
    out = replay(denoise, inv.x_T, inv.sigmas, inv.zs, form=FLOW)
    err = (out - x0).abs().max().item()
    assert err <= 1e-4, f"{family} N={steps} skip={skip}: {err:.3g}"


def test_flow_custom_sigmas_with_final_zero_reconstruct():
    table = sd3_table()
    user = torch.cat([table.flip(0)[::100], torch.zeros(1)])        # 1.0 ... , 0 (a scheduler's output)
    sigmas = below_pure_noise(custom_sigmas(user, 0.0, final_sigma=float(table[0])), 1.0, float(table[-10]))
    x0 = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    toy = ToyFlow()
    inv = invert(lambda x, s, i: toy(x, s), x0, sigmas, draw_inversion_noise(x0.shape, len(sigmas) - 1, 0),
                 form=FLOW)
    out = replay(lambda x, s, i: toy(x, s), inv.x_T, sigmas, inv.zs, form=FLOW)
    assert (out - x0).abs().max().item() <= 1e-4


def host_step(x, d, d_prev, h_last, s, s_next, z):
    """ComfyUI's sample_dpmpp_2m_sde step (eta 1, midpoint) for a CONST model, written out in float64."""
    lam = lambda sig: -math.log(sig / (1 - sig))
    h = lam(s_next) - lam(s)
    alpha_t = s_next * math.exp(lam(s_next))
    out = s_next / s * math.exp(-h) * x + alpha_t * -math.expm1(-2 * h) * d
    if d_prev is not None:
        out = out + 0.5 * alpha_t * -math.expm1(-2 * h) * (h / h_last) * (d - d_prev)
    return out + z * s_next * math.sqrt(-math.expm1(-2 * h)), h


def test_flow_step_is_comfyuis_dpmpp_2m_sde():
    sigmas = [0.97, 0.8, 0.55, 0.2, 0.004]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 4, 4, generator=g, dtype=torch.float64)
    ds = [torch.randn_like(x) for _ in range(4)]
    zs = [torch.randn_like(x) for _ in range(4)]
    ours, ref, h_last, prev = x, x, None, None
    for i, coef in enumerate(plan_steps(torch.tensor(sigmas, dtype=torch.float64), FLOW)):
        ours = solver_step(coef, ours, ds[i], prev, zs[i])
        ref, h_last = host_step(ref, ds[i], prev, h_last, sigmas[i], sigmas[i + 1], zs[i])
        prev = ds[i]
        assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_flow_sigmas_must_stay_below_one():
    with pytest.raises(ValueError, match="below 1.0"):
        plan_steps(torch.tensor([1.0, 0.5, 0.1]), FLOW)
    plan_steps(torch.tensor([1.0, 0.5, 0.1]), VE)       # fine for a VE model
    table = sd3_table()
    kept = exact_sigmas(table, 5, 0.0)
    assert float(kept[0]) == 1.0
    fixed = below_pure_noise(kept, 1.0, 0.9999)
    assert float(fixed[0]) == pytest.approx(0.9999) and torch.equal(fixed[1:], kept[1:])
    assert below_pure_noise(exact_sigmas(table, 5, 0.15), 1.0, 0.9999) is not None
    with pytest.raises(ValueError, match="second sigma"):
        below_pure_noise(torch.tensor([1.0, 0.99995, 0.1]), 1.0, 0.9999)


def test_eps_and_denoised_conversions_are_inverse():
    x = torch.randn(2, 16, 4, 4)
    d = torch.randn(2, 16, 4, 4)
    sigma = torch.tensor([0.3, 0.8]).reshape(2, 1, 1, 1)
    for form in (VE, FLOW):
        eps = form.eps_from_denoised(x, d, sigma)
        assert torch.allclose(form.denoised_from_eps(x, eps, sigma), d, atol=1e-5)
    # flow: x = (1 - s) x0 + s eps exactly
    x0, e = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    s = torch.tensor(0.4)
    assert torch.allclose(FLOW.eps_from_denoised((1 - s) * x0 + s * e, x0, s), e, atol=1e-5)


# ---- joint attention (DiT): text keys first, then image keys ----------------------------------
def joint_qk(rows=2, heads=3, text=10, image=12, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(rows, heads, text + image, d, generator=g)
    k = torch.randn(rows, heads, text + image, d, generator=g)
    return q, k


def test_joint_mass_is_normalised_over_text_and_image_keys():
    q, k = joint_qk()
    img_q = q[:, :, 10:]
    probs = torch.softmax(img_q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)      # (R, h, N, L)
    ours = concept_attention_mass(img_q, k, [2, 3, 4], 10, text_start=0, text_length=10)
    assert torch.allclose(ours, probs[..., [2, 3, 4]].sum(-1).sum(1), atol=1e-6)
    everything = concept_attention_mass(img_q, k, list(range(10)), 10, text_length=10)
    image_mass = probs[..., 10:].sum(-1).sum(1)
    assert torch.allclose(everything + image_mass, torch.full_like(everything, 3.0), atol=1e-5)


def test_joint_mass_chunking_mask_and_scale():
    q, k = joint_qk(heads=4, image=20)
    img_q = q[:, :, 10:]
    full = concept_attention_mass(img_q, k, [1, 2], 5, text_length=10)       # a 5-token context, repeated
    probs = torch.softmax(img_q @ k.transpose(-1, -2) / 8 ** 0.5, -1)
    assert torch.allclose(full, probs[..., [1, 2, 6, 7]].sum(-1).sum(1), atol=1e-6)   # both repeats
    small = concept_attention_mass(img_q, k, [1, 2], 5, text_length=10, max_elements=2 * 30 + 1)
    assert torch.allclose(full, small, atol=1e-6)
    mask = torch.ones(30, dtype=torch.bool)
    mask[:5] = False                                                             # hide the first repeat
    masked = concept_attention_mass(img_q, k, [1], 5, text_length=10, mask=mask)
    logits = img_q @ k.transpose(-1, -2) / 8 ** 0.5
    logits[..., :5] = float("-inf")
    ref = torch.softmax(logits, -1)[..., [6]].sum(-1).sum(1)
    assert torch.allclose(masked, ref, atol=1e-6)
    scaled = concept_attention_mass(img_q, k, [1], 5, text_length=10, scale=0.5)
    assert torch.allclose(scaled, torch.softmax(img_q @ k.transpose(-1, -2) * 0.5, -1)[..., [1, 6]].sum(-1).sum(1),
                          atol=1e-6)


def test_cross_attention_is_the_text_only_case():
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 12, 4 * 8, generator=g), torch.randn(2, 77, 4 * 8, generator=g)
    qh = q.reshape(2, 12, 4, 8).transpose(1, 2)
    kh = k.reshape(2, 77, 4, 8).transpose(1, 2)
    assert torch.equal(concept_attention(q, k, 4, [1, 2], 77), concept_attention_mass(qh, kh, [1, 2], 77))
    with pytest.raises(ValueError, match="outside"):
        concept_attention_mass(qh, kh, [1], 77, text_start=10, text_length=77)


def test_t5_chunk_positions_have_any_length():
    from ledits_core import concept_token_positions
    chunk = [(5, 1.0, 1), (6, 1.0, 2), (1, 1.0, 0)] + [(0, 1.0, 0)] * 253       # "a b" + EOS + padding
    assert concept_token_positions([chunk], chunk_length=None) == [0, 1]
    with pytest.raises(ValueError, match="expected 77"):
        concept_token_positions([chunk])
