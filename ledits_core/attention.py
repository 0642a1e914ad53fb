"""Attention maps of the edit concepts, recomputed for their rows only.

The host's fast attention kernel never materialises probabilities, so for the rows that belong to
a concept, at the capture sites (UNet cross-attention at latent/4; chosen DiT joint-attention
blocks), we recompute softmax(q k^T / sqrt(d)) in float32 over every key, fold the
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
    """Cross-attention (UNet): sum over heads and the concept's tokens of the probabilities.

    q: (R, N, heads*d) projected queries, k: (R, L, heads*d) projected keys, where L is a multiple
    of the concept's own `context_length` (77 per prompt chunk; ComfyUI repeats shorter contexts up
    to the batch's common length). Returns (R, N) float32.
    """
    rows, n, inner = q.shape
    if inner % heads:
        raise ValueError(f"projection width {inner} is not divisible by {heads} heads")
    d = inner // heads
    qh = q.reshape(rows, n, heads, d).transpose(1, 2)
    kh = k.reshape(rows, k.shape[1], heads, d).transpose(1, 2)
    return concept_attention_mass(qh, kh, token_positions, context_length, max_elements=max_elements)


def concept_attention_mass(q, k, token_positions, context_length, text_start=0, text_length=None,
                           scale=None, mask=None, max_elements=2 ** 24):
    """Probability mass that each query gives to the concept's own text tokens, summed over heads.

    q: (R, heads, N, d) queries (image tokens only), k: (R, heads, L, d) every key the model attends
    to. The text keys are k[:, :, text_start:text_start + text_length] (all of k for UNet
    cross-attention; the leading text stream of a DiT's joint attention), a repeat of the
    concept's `context_length` tokens. Softmax runs over all L keys -- text and image, exactly as
    the model normalises -- in float32, `mask` (broadcastable to (R, heads, N, L); bool keeps True,
    float is added) applied. Returns (R, N) float32, computed in head chunks (and query chunks
    when one head is too big) so that no more than `max_elements` probabilities exist at once.
    """
    if not token_positions:
        raise ValueError("a concept needs at least one token position")
    rows, heads, n, d = q.shape
    length = k.shape[2]
    text_length = length - text_start if text_length is None else int(text_length)
    if text_start < 0 or text_start + text_length > length:
        raise ValueError(f"text keys [{text_start}, {text_start + text_length}) outside {length} keys")
    if text_length % context_length:
        raise ValueError(f"context length {text_length} is not a multiple of the concept's {context_length}")
    if max(token_positions) >= context_length or min(token_positions) < 0:
        raise ValueError(f"token positions {list(token_positions)} outside a context of {context_length}")
    repeats = text_length // context_length
    idx = torch.as_tensor(token_positions, dtype=torch.long, device=q.device)
    out = torch.zeros(rows, n, dtype=torch.float32, device=q.device)
    step = max(1, min(heads, max_elements // max(1, rows * n * length)))
    per_head = rows * n * length
    queries = n if per_head <= max_elements else max(1, max_elements // max(1, rows * length))
    scale = d ** -0.5 if scale is None else scale
    for h0 in range(0, heads, step):
        kc = k[:, h0:h0 + step].float()
        for n0 in range(0, n, queries):
            qc = q[:, h0:h0 + step, n0:n0 + queries].float()
            logits = qc @ kc.transpose(-1, -2) * scale
            if mask is not None:
                m = _mask_chunk(mask, h0, step, n0, queries)
                logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m.float()
            probs = torch.softmax(logits, dim=-1)
            if text_start or text_length != length:
                probs = probs[..., text_start:text_start + text_length]
            probs = probs.reshape(rows, probs.shape[1], probs.shape[2], repeats, context_length).sum(dim=3)
            out[:, n0:n0 + queries] += probs.index_select(-1, idx).sum(dim=(1, 3))
    return out


def _mask_chunk(mask, h0, step, n0, queries):
    """The part of an attention mask (broadcastable to (R, heads, N, L)) for one chunk."""
    mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
    if mask.shape[1] > 1:
        mask = mask[:, h0:h0 + step]
    if mask.shape[2] > 1:
        mask = mask[:, :, n0:n0 + queries]
    return mask


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
        if head_sum.shape[-1] != math.prod(grid):
            raise ValueError(f"a map of {head_sum.shape[-1]} cells does not fit the grid {grid}")
        if key in self._grid and self._grid[key] != grid:
            raise ValueError(f"maps of different grids for {key!r}: {self._grid[key]} and {grid}")
        self._grid[key] = grid
        self._sums[key] = self._sums[key] + head_sum if key in self._sums else head_sum.float().clone()
        self._heads[key] = self._heads.get(key, 0) + int(heads)

    def keys(self):
        return list(self._sums)

    def map(self, key):
        """(B, *grid) float32 mean over sites and heads -- (B, h, w) for an image, (B, frames, h, w)
        for a video's token grid -- or None if nothing was recorded."""
        if key not in self._sums:
            return None
        return (self._sums[key] / self._heads[key]).reshape(-1, *self._grid[key])
