"""Cross-attention maps of the edit concepts, recomputed for their rows only.

The host's fast attention kernel never materialises probabilities, so for the rows that belong to
a concept, at the latent/4 sites, we recompute softmax(q k^T / sqrt(d)) in float32, fold the
repeat-padding of the context, keep the concept's own token columns, sum them, and sum over heads.
The accumulator then averages over all (site, head) pairs, as the references do.
"""
import math

import torch


def attention_grid(latent_size, divisor=4):
    """Spatial size of the UNet level at latent/divisor: each stride-2 downsample gives ceil(x/2)."""
    h, w = (int(v) for v in latent_size)
    levels = int(round(math.log2(divisor)))
    if 2 ** levels != divisor:
        raise ValueError(f"divisor must be a power of 2; got {divisor}")
    for _ in range(levels):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def concept_attention(q, k, heads, token_positions, context_length, max_elements=2 ** 24):
    """Sum over heads and the concept's tokens of the attention probabilities.

    q: (R, N, heads*d) projected queries, k: (R, L, heads*d) projected keys, where L is a multiple
    of the concept's own `context_length` (77 per prompt chunk; ComfyUI repeats shorter contexts up
    to the batch's common length). Returns (R, N) float32. Computed in head chunks so that no more
    than `max_elements` probabilities exist at once.
    """
    if not token_positions:
        raise ValueError("a concept needs at least one token position")
    rows, n, inner = q.shape
    length = k.shape[1]
    if inner % heads:
        raise ValueError(f"projection width {inner} is not divisible by {heads} heads")
    if length % context_length:
        raise ValueError(f"context length {length} is not a multiple of the concept's {context_length}")
    d = inner // heads
    repeats = length // context_length
    if max(token_positions) >= context_length or min(token_positions) < 0:
        raise ValueError(f"token positions {list(token_positions)} outside a context of {context_length}")
    idx = torch.as_tensor(token_positions, dtype=torch.long, device=q.device)
    qh = q.reshape(rows, n, heads, d).transpose(1, 2)
    kh = k.reshape(rows, length, heads, d).transpose(1, 2)
    out = torch.zeros(rows, n, dtype=torch.float32, device=q.device)
    step = max(1, min(heads, max_elements // max(1, rows * n * length)))
    scale = d ** -0.5
    for h0 in range(0, heads, step):
        qc = qh[:, h0:h0 + step].float()
        kc = kh[:, h0:h0 + step].float()
        probs = torch.softmax(qc @ kc.transpose(-1, -2) * scale, dim=-1)
        probs = probs.reshape(rows, probs.shape[1], n, repeats, context_length).sum(dim=3)
        out += probs.index_select(-1, idx).sum(dim=(1, 3))
    return out


class AttentionAccumulator:
    """Sums per-site head-summed maps per key (a concept) and averages over (site, head) pairs.

    Tolerates missing or extra UNet calls: a key with no data simply has no map.
    """

    def __init__(self):
        self._sums = {}
        self._heads = {}
        self._grid = {}

    def add(self, key, head_sum, heads, grid):
        grid = tuple(int(g) for g in grid)
        if head_sum.shape[-1] != grid[0] * grid[1]:
            raise ValueError(f"a map of {head_sum.shape[-1]} cells does not fit the grid {grid}")
        if key in self._grid and self._grid[key] != grid:
            raise ValueError(f"maps of different grids for {key!r}: {self._grid[key]} and {grid}")
        self._grid[key] = grid
        self._sums[key] = self._sums[key] + head_sum if key in self._sums else head_sum.float().clone()
        self._heads[key] = self._heads.get(key, 0) + int(heads)

    def keys(self):
        return list(self._sums)

    def map(self, key):
        """(B, h, w) float32 mean over sites and heads, or None if nothing was recorded."""
        if key not in self._sums:
            return None
        h, w = self._grid[key]
        return (self._sums[key] / self._heads[key]).reshape(-1, h, w)
