import pytest
import torch

from ledits_core import AttentionAccumulator, attention_grid, concept_attention, concept_token_positions


def qk(rows=2, n=12, length=77, heads=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, n, heads * d, generator=g), torch.randn(rows, length, heads * d, generator=g))


def reference(q, k, heads, tokens):
    rows, n, inner = q.shape
    d = inner // heads
    qh = q.reshape(rows, n, heads, d).permute(0, 2, 1, 3)
    kh = k.reshape(rows, -1, heads, d).permute(0, 2, 1, 3)
    p = torch.softmax(qh @ kh.transpose(-1, -2) / d ** 0.5, -1)
    return p, p[..., tokens].sum(-1).sum(1)


def test_matches_direct_probabilities_and_rows_sum_to_one():
    q, k = qk()
    p, ref = reference(q, k, 4, [1, 2, 3])
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
    assert torch.allclose(concept_attention(q, k, 4, [1, 2, 3], 77), ref, atol=1e-6)


def test_head_chunking_gives_the_same_result():
    q, k = qk(heads=8)
    full = concept_attention(q, k, 8, [1, 5], 77)
    chunked = concept_attention(q, k, 8, [1, 5], 77, max_elements=2 * 12 * 77)
    assert torch.allclose(full, chunked, atol=1e-6)


def test_repeat_padding_is_folded():
    """ComfyUI repeats a 77-token context to 154 when batched with a longer one; folding the
    repeats recovers the 77-token probabilities exactly."""
    q, k = qk()
    once = concept_attention(q, k, 4, [1, 2], 77)
    twice = concept_attention(q, torch.cat([k, k], dim=1), 4, [1, 2], 77)
    assert torch.allclose(once, twice, atol=1e-6)


def test_low_precision_inputs_are_computed_in_float32():
    q, k = qk()
    out = concept_attention(q.half(), k.half(), 4, [1], 77)
    assert out.dtype == torch.float32 and torch.allclose(out, concept_attention(q, k, 4, [1], 77), atol=2e-2)


def test_accumulator_averages_over_sites_and_heads():
    acc = AttentionAccumulator()
    acc.add("c0", torch.full((2, 6), 4.0), heads=4, grid=(2, 3))
    acc.add("c0", torch.full((2, 6), 16.0), heads=8, grid=(2, 3))
    m = acc.map("c0")
    assert m.shape == (2, 2, 3) and torch.allclose(m, torch.full((2, 2, 3), 20.0 / 12))
    assert acc.map("missing") is None
    with pytest.raises(ValueError, match="grid"):
        acc.add("c0", torch.zeros(2, 4), heads=1, grid=(2, 2))


@pytest.mark.parametrize("latent, grid", [((64, 64), (16, 16)), ((128, 128), (32, 32)),
                                          ((8, 6), (2, 2)), ((13, 7), (4, 2)), ((6, 10), (2, 3))])
def test_attention_grid_follows_stride_2_downsampling(latent, grid):
    assert attention_grid(latent, 4) == grid


def test_token_positions_from_word_ids():
    pad = [(49407, 1.0, 0)] * 77
    chunk = [(49406, 1.0, 0), (1, 1.0, 1), (2, 1.0, 1), (3, 1.0, 2), (49407, 1.0, 0)] + pad[:72]
    assert concept_token_positions([chunk]) == [1, 2, 3]
    assert concept_token_positions([chunk, chunk]) == [1, 2, 3, 78, 79, 80]
    with pytest.raises(ValueError, match="no tokens"):
        concept_token_positions([[(49406, 1.0, 0), (49407, 1.0, 0)] + pad[:75]])
    with pytest.raises(ValueError, match="at least one token"):
        concept_attention(*qk(), 4, [], 77)
