import math

import pytest
import torch

from ledits_core import (attention_mask, combine_masks, noise_mask, quantile_mask,
                         smooth_attention, smoothing_kernel, upsample_mask)
from ledits_core.masks import edited_region, resize_user_mask


def test_kernel_constants():
    k = smoothing_kernel()
    assert k.dtype == torch.float32
    w = torch.tensor([math.exp(-1), 1, math.exp(-1)], dtype=torch.float64)
    w /= w.sum()
    assert torch.allclose(w, torch.tensor([0.211942, 0.576117, 0.211942], dtype=torch.float64), atol=1e-6)
    assert float(k[0, 0]) == pytest.approx(0.044919, abs=1e-6)
    assert float(k[0, 1]) == pytest.approx(0.122103, abs=1e-6)
    assert float(k[1, 1]) == pytest.approx(0.331911, abs=1e-6)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)


def test_smoothing_a_delta_with_reflect_padding():
    m = torch.zeros(1, 5, 5)
    m[0, 2, 2] = 1.0
    s = smooth_attention(m)
    k = smoothing_kernel()
    assert torch.allclose(s[0, 1:4, 1:4], k)  # interior: the kernel itself
    m = torch.zeros(1, 4, 4)
    m[0, 1, 1] = 1.0  # next to the border: the reflected copy adds to the edge cells
    assert float(smooth_attention(m)[0, 0, 0]) == pytest.approx(float(4 * k[0, 0]), abs=1e-6)
    m = torch.zeros(1, 3, 3)
    m[0, 0, 0] = 1.0  # corner: reflect pads mirror the cell at index 1, not the corner itself
    s = smooth_attention(m)
    assert float(s[0, 0, 0]) == pytest.approx(float(k[1, 1]), abs=1e-7)
    assert float(s[0, 1, 1]) == pytest.approx(float(k[0, 0]), abs=1e-7)


def test_quantile_linear_interpolation_and_ties():
    v = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    # q(0.9) = 3 + 0.6 * (4 - 3) = 3.6 -> only 4 kept
    assert quantile_mask(v, 0.9).tolist() == [[0, 0, 0, 0, 1]]
    assert quantile_mask(v, 0.75).tolist() == [[0, 0, 0, 1, 1]]  # q = 3.0 exactly, >= keeps it
    ties = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert quantile_mask(ties, 0.9).tolist() == [[1, 1, 1, 0]]
    assert quantile_mask(v, 0.0).sum() == 5  # threshold 0 keeps everything
    assert quantile_mask(v, 1.0).tolist() == [[0, 0, 0, 0, 1]]  # threshold 1 keeps the maximum


def test_quantile_is_per_image():
    a = torch.arange(16.0).reshape(1, 4, 4)
    b = (torch.arange(16.0) * -1 + 100).reshape(1, 4, 4)
    both = quantile_mask(torch.cat([a, b]), 0.75)
    assert torch.equal(both[:1], quantile_mask(a, 0.75))
    assert torch.equal(both[1:], quantile_mask(b, 0.75))
    assert int(both[0].sum()) == 4 and int(both[1].sum()) == 4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs(dtype):
    maps = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(0)).to(dtype)
    m = attention_mask(maps, 0.8, (16, 24))
    assert m.dtype == torch.float32 and m.shape == (2, 1, 16, 24)
    psi = torch.randn(2, 4, 16, 24, generator=torch.Generator().manual_seed(1)).to(dtype)
    assert noise_mask(psi, 0.9).shape == (2, 1, 16, 24)


def test_m1_upsamples_cells_to_4x4_blocks_and_keeps_top_fraction():
    maps = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(3))
    m = attention_mask(maps, 0.75, (16, 16))
    small = quantile_mask(smooth_attention(maps), 0.75)
    assert torch.equal(m[0, 0], small[0].repeat_interleave(4, 0).repeat_interleave(4, 1))
    assert int(small.sum()) == 4


def test_non_square_and_non_multiple_sizes():
    maps = torch.rand(3, 3, 5)
    m = attention_mask(maps, 0.5, (10, 18))
    assert m.shape == (3, 1, 10, 18)
    assert torch.equal(upsample_mask(torch.ones(1, 1, 1), (5, 7)), torch.ones(1, 1, 5, 7))
    assert smooth_attention(torch.ones(1, 1, 1)).shape == (1, 1, 1)


def test_m2_fraction_and_intersection():
    psi = torch.randn(2, 4, 20, 20, generator=torch.Generator().manual_seed(4))
    m2 = noise_mask(psi, 0.9)
    assert m2.shape == (2, 1, 20, 20)
    assert all(abs(float(m2[b].mean()) - 0.1) < 0.01 for b in range(2))
    m1 = attention_mask(torch.rand(2, 5, 5), 0.5, (20, 20))
    both = combine_masks(m1, m2)
    assert bool((both <= m1).all()) and bool((both <= m2).all())
    assert combine_masks(None, m2) is m2 and combine_masks(None, None) is None


def test_user_mask_resize():
    mask = torch.zeros(64, 48)
    mask[:32] = 1
    r = resize_user_mask(mask, (8, 6), batch=2)
    assert r.shape == (2, 1, 8, 6) and float(r[0, 0, :4].min()) == 1 and float(r[0, 0, 4:].max()) == 0
    with pytest.raises(ValueError, match="images"):
        resize_user_mask(torch.zeros(3, 8, 8), (8, 8), batch=2)


def test_edited_region_keeps_cells_masked_in_a_tenth_of_the_active_steps():
    steps = torch.zeros(20, 1, 1, 2, 3)
    steps[:2, ..., 0, 0] = 1          # 2 of 20 steps: exactly the share, kept (no float tie)
    steps[:1, ..., 0, 1] = 1          # 1 of 20: dropped
    steps[:, ..., 1, 2] = 1           # every step
    region = edited_region(steps.sum(0), 20)
    assert region.tolist() == [[[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]]
    assert edited_region(steps[0], 1).equal(steps[0])       # one active step: its mask
    assert edited_region(None, 0) is None                   # never active
