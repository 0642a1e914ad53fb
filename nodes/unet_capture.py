"""UNet cross-attention capture as attn2 replace patches (the UNet adapter of ledits_core.attention).

A `CapturePatch` sits at each cross-attention site of the chosen UNet level. It returns exactly
what attention would return (it calls the previously registered replace patch of that site, if
another pack installed one, else the host's optimized attention kernel) and, only when the
current UNet call carries a `CaptureRequest` in transformer_options, recomputes probabilities for
the concept rows.
"""
import math

import comfy.ldm.modules.attention as host_attention

from ..ledits_core import attention_grid, concept_attention
from .capture import REQUEST_KEY, CaptureRequest, copy_transformer_options


class CapturePatch:
    """attn2 replace: pass-through attention plus optional probability capture."""

    is_ledits_capture = True

    def __init__(self, previous=None):
        self.previous = previous

    def __call__(self, q, k, v, extra_options):
        request = extra_options.get(REQUEST_KEY)
        if request is not None:
            request.record(q, k, extra_options)
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        return host_attention.optimized_attention(
            q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"),
            transformer_options=extra_options)


class UNetCaptureRequest(CaptureRequest):
    """Records the concept rows of the attn2 calls at the configured level."""

    def __init__(self, concepts, latent_size, config):
        super().__init__(concepts, attention_grid(latent_size, config.divisor))
        self.include_middle = config.include_middle

    def record(self, q, k, extra_options):
        block = extra_options.get("block")
        if block is not None and block[0] == "middle" and not self.include_middle:
            return
        shape = extra_options.get("activations_shape")
        if shape is None or tuple(shape[-2:]) != self.grid:
            return
        heads = extra_options["n_heads"]
        for rows, index in self.concept_chunks(extra_options, q.shape[0]):
            positions, context_length = self.concepts[index]
            self.add(index, concept_attention(q[rows], k[rows], heads, positions, context_length), heads)


def capture_sites(diffusion_model, config):
    """(block, number, index) keys of the attn2 sites at latent/divisor, found by walking the UNet
    and counting its down/upsampling layers (no hard-coded block numbers)."""
    target = int(round(math.log2(config.divisor)))
    sites, level = [], 0

    def visit(name, number, block):
        nonlocal level
        for layer in block:
            blocks = getattr(layer, "transformer_blocks", None)
            if blocks is not None and level == target and (name != "middle" or config.include_middle):
                sites.extend((name, number, j) for j in range(len(blocks))
                             if getattr(blocks[j], "attn2", None) is not None)
            kind = type(layer).__name__
            if kind == "Downsample":
                level += 1
            elif kind == "Upsample":
                level -= 1

    for i, block in enumerate(diffusion_model.input_blocks):
        visit("input", i, block)
    visit("middle", 0, diffusion_model.middle_block)
    for i, block in enumerate(diffusion_model.output_blocks):
        visit("output", i, block)
    return sites


def _current_patch(replace, site):
    return replace.get(site, replace.get(site[:2]))


def install_capture(model_options, diffusion_model, config):
    """A copy of model_options with a CapturePatch at every site (wrapping any patch already
    there); the given dict is left untouched."""
    options, transformer = copy_transformer_options(model_options)
    replace_all = dict(transformer.get("patches_replace", {}))
    attn2 = dict(replace_all.get("attn2", {}))
    for site in capture_sites(diffusion_model, config):
        current = _current_patch(attn2, site)
        if not getattr(current, "is_ledits_capture", False):
            attn2[site] = CapturePatch(current)
    replace_all["attn2"] = attn2
    transformer["patches_replace"] = replace_all
    return options

