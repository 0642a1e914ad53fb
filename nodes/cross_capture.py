"""Cross-attention capture for DiTs that read text through cross-attention (WAN), on the same
hook as the joint-attention adapter (nodes/dit_capture.py: `BlockLabel` on the chosen blocks,
the chained `CaptureOverride`), so another node's override and block patches keep running.

A WAN block makes two attention calls with the same transformer_options: self-attention over the
video tokens, then cross-attention with those tokens as queries and the text tokens (512 umT5
rows) as keys, softmax over the text keys only -- a UNet's attn2. The request records the second
kind: the queries are the video tokens and it is not the block's first call (the call order tells
the two apart even when the token counts happen to be equal). The concept rows' share of that
softmax is kept per video token, on the token grid (latent frames, h/2, w/2).
"""
import math

from ..ledits_core import concept_attention
from .capture import CaptureRequest

CALLS_KEY = "ledits_pp_block_calls"     # attention calls seen so far in the current labelled block


class CrossCaptureRequest(CaptureRequest):
    """Records the concept rows of the cross-attention calls of labelled blocks, on the token grid
    (frames, h, w); given only (h, w), the frames are the call's video tokens / (h * w)."""

    def record(self, args, kwargs, options):
        calls = options.get(CALLS_KEY, 0)
        options[CALLS_KEY] = calls + 1      # the BlockLabel's own copy: lives for this block call only
        q, k = args[0], args[1]
        grid = None if calls == 0 or kwargs.get("skip_reshape", False) or q.ndim != 3 else self._grid(q.shape[1])
        if grid is None:
            return
        heads = kwargs["heads"] if "heads" in kwargs else args[3]
        for rows, index in self.concept_chunks(options, q.shape[0]):
            positions, context_length = self.concepts[index]
            if k.shape[1] % context_length:
                continue            # not this concept's text (e.g. image-conditioning keys)
            mass = concept_attention(q[rows], k[rows], heads, positions, context_length)
            with self._lock:
                self.maps.add(index, mass, heads, grid)

    def _grid(self, tokens):
        """(frames, h, w) when `tokens` are this latent's video tokens, else None."""
        if len(self.grid) == 3:
            return self.grid if tokens == math.prod(self.grid) else None
        per_frame = math.prod(self.grid)
        return (tokens // per_frame, *self.grid) if tokens % per_frame == 0 else None


def token_grid(latent_size, patch_size):
    """(frames, h, w) of the video tokens of a latent of spatial-temporal size (T, H, W): the host
    pads each axis up to a multiple of the patch size."""
    return tuple(-(-int(n) // int(p)) for n, p in zip(latent_size, patch_size))
