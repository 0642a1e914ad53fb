import pytest
import torch

from ledits_core import (EditConcept, apply_edit_guidance, attention_mask, edit_direction,
                         is_active, noise_mask, rescale_guidance)
from ledits_core.guidance import cfg


def preds(seed=0, n=2, shape=(2, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n + 1)]


def test_threshold_zero_is_plain_guidance_and_reverse_flips_sign():
    u, c = preds(n=1)
    concept = EditConcept(scale=3.0, threshold=0.0, mask_type="noise")
    out, masks = apply_edit_guidance(u, u, [c], [concept], step=0)
    assert torch.allclose(out, u + 3.0 * (c - u)) and float(masks[0].min()) == 1.0
    rev, _ = apply_edit_guidance(u, u, [c], [EditConcept(scale=3.0, threshold=0.0, reverse=True,
                                                         mask_type="noise")], step=0)
    assert torch.allclose(rev, u - 3.0 * (c - u))


def test_no_concepts_is_the_base():
    u = preds(n=0)[0]
    out, masks = apply_edit_guidance(u, u, [], [], step=3)
    assert out is u and masks == []


@pytest.mark.parametrize("warmup, cooldown, active_steps", [
    (0, None, [0, 1, 2, 3, 4]), (2, None, [2, 3, 4]), (0, 3, [0, 1, 2]), (1, 2, [1]), (3, 3, [])])
def test_warmup_cooldown_boundaries(warmup, cooldown, active_steps):
    concept = EditConcept(warmup=warmup, cooldown=cooldown, mask_type="none")
    assert [i for i in range(5) if is_active(concept, i)] == active_steps
    u, c = preds(n=1)
    for i in range(5):
        out, masks = apply_edit_guidance(u, u, [c], [concept], step=i)
        assert torch.equal(out, u) != (i in active_steps)
        assert (masks[0] is None) == (i not in active_steps)


def test_masks_multiply_the_right_concept():
    u, c1, c2 = preds(n=2)
    a1 = torch.zeros(2, 2, 2)
    a1[:, 0, 0] = 1  # concept 1 attends top-left
    a2 = torch.zeros(2, 2, 2)
    a2[:, 1, 1] = 1  # concept 2 bottom-right
    concepts = [EditConcept(scale=1.0, threshold=0.7, mask_type="attention")] * 2
    out, masks = apply_edit_guidance(u, u, [c1, c2], concepts, step=0, attention_maps=[a1, a2])
    m1 = attention_mask(a1, 0.7, (8, 8))
    m2 = attention_mask(a2, 0.7, (8, 8))
    assert torch.equal(masks[0], m1) and torch.equal(masks[1], m2)
    assert torch.allclose(out, u + m1 * (c1 - u) + m2 * (c2 - u))
    assert not torch.equal(m1, m2)


def test_intersect_needs_attention():
    u, c = preds(n=1)
    with pytest.raises(ValueError, match="cross-attention map"):
        apply_edit_guidance(u, u, [c], [EditConcept()], step=0)


def test_duplicate_concepts_double_the_guidance():
    u, c = preds(n=1)
    k = EditConcept(scale=2.0, threshold=0.0, mask_type="none")
    one, _ = apply_edit_guidance(u, u, [c], [k], step=0)
    two, _ = apply_edit_guidance(u, u, [c, c], [k, k], step=0)
    assert torch.allclose(two - u, 2 * (one - u))


def test_user_mask_is_applied_before_the_quantile():
    u, c = preds(n=1)
    user = torch.zeros(1, 1, 8, 8)
    user[..., :4, :] = 1
    k = EditConcept(scale=1.0, threshold=0.5, mask_type="noise", user_mask=user)
    psi = edit_direction(c, u, k)
    assert float(psi[..., 4:, :].abs().max()) == 0
    _, masks = apply_edit_guidance(u, u, [c], [k], step=0)
    assert torch.equal(masks[0], noise_mask(psi, 0.5))


def test_denoised_domain_equals_eps_domain():
    """D = x - sigma*eps: guidance applied to denoised predictions equals guidance applied to eps
    predictions converted afterwards (masks included, up to quantile round-off)."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 8, 8, generator=g)
    sigma = 3.7
    eu, e1, e2 = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
    amap = [torch.rand(2, 2, 2, generator=g), torch.rand(2, 2, 2, generator=g)]
    concepts = [EditConcept(scale=5.0, threshold=0.8), EditConcept(scale=2.0, reverse=True, threshold=0.6)]
    eps_out, eps_masks = apply_edit_guidance(eu, eu, [e1, e2], concepts, 0, amap)
    d = lambda e: x - sigma * e
    d_out, d_masks = apply_edit_guidance(d(eu), d(eu), [d(e1), d(e2)], concepts, 0, amap)
    assert all(torch.equal(a, b) for a, b in zip(eps_masks, d_masks))
    assert torch.allclose(d_out, d(eps_out), atol=1e-4)


def test_cfg_sign_and_rescale():
    u, c = preds(n=1)
    assert torch.allclose(cfg(u, c, 3.5), u + 3.5 * (c - u))
    assert torch.allclose(cfg(u, c, 0.5), u + 0.5 * (c - u))  # scales <= 1 work
    out = rescale_guidance(5 * c, c, 1.0)
    assert torch.allclose(out.std(dim=(1, 2, 3)), c.std(dim=(1, 2, 3)), atol=1e-5)
    assert rescale_guidance(c, u, 0.0) is c


def test_concept_validation():
    with pytest.raises(ValueError, match="mask_type"):
        EditConcept(mask_type="bogus")
    with pytest.raises(ValueError, match="threshold"):
        EditConcept(threshold=1.5)
    with pytest.raises(ValueError, match="warmup"):
        EditConcept(warmup=-1)
