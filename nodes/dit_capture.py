"""DiT joint-attention capture through ComfyUI's `optimized_attention_override` (the DiT adapter
of ledits_core.attention).

Two pieces, both added to copies of model_options (never to the MODEL itself):
* `BlockLabel`: a block-replace patch ("dit", "double_block" | "single_block", i) on each chosen
  block. It puts the block's index into the transformer_options that block passes down, then runs
  the block unchanged (through the replace patch another node put there, if any). The host gives
  no block keys to attention on every version/family, so this label is how a call is placed.
  DiTs without such patches (Z-Image / Lumina 2, HiDream) are placed by counting their joint
  calls instead: nodes/dit_call_order.py, with a TokenLayout saying where their tokens sit.
* `CaptureOverride`: transformer_options["optimized_attention_override"]. Every attention of the
  diffusion model goes through it; it returns exactly what the previous override (another node's)
  or the host kernel returns and, only inside a labelled block of a call that carries a
  CaptureRequest, recomputes the concept rows' probabilities of image queries over all keys.

Joint attention runs over [text; image] tokens, text first (SD3 MMDiT, Flux, Qwen-Image); image
tokens are the latent's patches, row-major. A call whose sequence holds no text (SD3.5's image-only
attention) is skipped.
"""
import re
from dataclasses import dataclass

from ..ledits_core import concept_attention_mass
from .capture import REQUEST_KEY, CaptureRequest, copy_transformer_options

LABEL_KEY = "ledits_pp_block"
ORDER_KEY = "ledits_pp_joint_calls"     # DiTs without block patches: nodes/dit_call_order.py
OVERRIDE_KEY = "optimized_attention_override"


@dataclass(frozen=True)
class TokenLayout:
    """Where a joint call's tokens sit, for DiTs whose sequence is not plain [text; image]: `length`
    tokens in all, the text keys [text_start, text_start + text_length), the image queries from
    `image_start` on (the latent's patches, row-major; pad tokens after them are not read)."""
    length: int
    text_start: int
    text_length: int
    image_start: int


class BlockLabel:
    """dit block-replace patch: label the block, then run it as before."""

    is_ledits_capture = True

    def __init__(self, index, previous=None):
        self.index = index
        self.previous = previous

    def __call__(self, args, extra):
        options = dict(args.get("transformer_options") or {})
        options[LABEL_KEY] = self.index
        args = dict(args, transformer_options=options)
        if self.previous is not None:
            return self.previous(args, extra)
        return extra["original_block"](args)


class CaptureOverride:
    """optimized_attention_override: pass-through attention plus optional capture."""

    is_ledits_capture = True

    def __init__(self, previous=None):
        self.previous = previous

    def __call__(self, func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        request = options.get(REQUEST_KEY)
        if request is not None and LABEL_KEY in options:
            request.record(args, kwargs, options)
        elif request is not None and ORDER_KEY in options:      # counts this forward's joint calls
            layout = options[ORDER_KEY].chosen_layout(args, kwargs)
            if layout is not None:
                request.record(args, kwargs, options, layout)
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)


class JointCaptureRequest(CaptureRequest):
    """Records concept rows of joint [text; image] attention calls in labelled blocks."""

    def __init__(self, concepts, grid):
        super().__init__(concepts, grid)
        self.image_tokens = grid[0] * grid[1]

    def concept_tokens(self, index, layout):
        """(positions, context length) of concept `index` among this call's text keys; a family
        whose text keys join several streams of the concept (HiDream) maps them here."""
        return self.concepts[index]

    def record(self, args, kwargs, options, layout=None):
        """`layout` (a TokenLayout) places text and image; None: [text; image], image last."""
        q, k = args[0], args[1]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        if not kwargs.get("skip_reshape", False):        # (B, T, heads*d) -> (B, heads, T, d)
            q = q.reshape(q.shape[0], q.shape[1], heads, -1).transpose(1, 2)
            k = k.reshape(k.shape[0], k.shape[1], heads, -1).transpose(1, 2)
        if layout is None:
            text = _text_tokens(options, k.shape[2], self.image_tokens)
            if text <= 0 or q.shape[2] != k.shape[2]:
                return
            layout = TokenLayout(k.shape[2], text_start=0, text_length=text, image_start=text)
        mask = args[4] if len(args) > 4 else kwargs.get("mask")    # Qwen-Image passes it positionally
        for rows, index in self.concept_chunks(options, q.shape[0]):
            positions, context_length = self.concept_tokens(index, layout)
            if layout.text_length % context_length:
                continue            # not this concept's text layout (e.g. extra reference tokens)
            image = layout.image_start
            mass = concept_attention_mass(
                q[rows, :, image:image + self.image_tokens], k[rows], positions, context_length,
                text_start=layout.text_start, text_length=layout.text_length, scale=kwargs.get("scale"),
                mask=None if mask is None else _query_mask(mask, rows, image, self.image_tokens))
            self.add(index, mass, heads)


def _text_tokens(options, length, image_tokens):
    """How many text tokens lead the joint sequence (0.33's Flux single blocks say so themselves)."""
    img_slice = options.get("img_slice")
    if img_slice is not None and img_slice[1] == image_tokens:
        return int(img_slice[0])
    return length - image_tokens


def _query_mask(mask, rows, text, image_tokens):
    """The image-query rows of an attention mask (B|1, [heads|1,] T|1, T), for one row chunk."""
    if mask.ndim == 3:
        mask = mask[:, None]
    elif mask.ndim == 2:
        mask = mask[None, None]
    if mask.shape[0] > 1:
        mask = mask[rows]
    if mask.shape[2] > 1:
        mask = mask[:, :, text:text + image_tokens]
    return mask


def resolve_blocks(spec, count, default):
    """Block indices (0-based, in the order the model runs them) from a user spec: "auto" (the
    family's `default`), "all", or indices and ranges such as "0-9, 12"."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        chosen = set(default)
    elif spec == "all":
        chosen = set(range(count))
    else:
        chosen = set()
        for part in filter(None, (p.strip() for p in spec.split(","))):
            match = _RANGE.fullmatch(part)
            if match is None:
                raise ValueError(f"blocks: cannot read {part!r}; use 'auto', 'all' or indices and ranges "
                                 f"such as '0-9, 12' (this model has {count} blocks: 0-{count - 1})")
            lo = int(match.group(1))
            hi = int(match.group(2)) if match.group(2) is not None else lo
            if hi < lo or hi >= count:
                raise ValueError(f"blocks: {part!r} is outside this model's {count} blocks (0-{count - 1})")
            chosen.update(range(lo, hi + 1))
    if not chosen:
        raise ValueError(f"blocks: {spec!r} selects no block (this model has {count}: 0-{count - 1})")
    return sorted(chosen)


_RANGE = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")


def install_capture(model_options, family, diffusion_model, config):
    """A copy of model_options with block labels on the chosen blocks only (an earlier capture's
    labels are replaced) and the capture override, both wrapping any override and block patch
    another node put there; the given dict is left untouched."""
    options, transformer = copy_transformer_options(model_options)
    replace_all = dict(transformer.get("patches_replace", {}))
    dit = dict(replace_all.get("dit", {}))
    for site, current in list(dit.items()):     # labels of an earlier capture: this config decides
        if isinstance(current, BlockLabel):
            if current.previous is None:
                del dit[site]
            else:
                dit[site] = current.previous
    sites = family.joint_blocks(diffusion_model)
    for index in resolve_blocks(config.blocks, len(sites), family.default_blocks(diffusion_model)):
        dit[sites[index]] = BlockLabel(index, dit.get(sites[index]))
    replace_all["dit"] = dit
    transformer["patches_replace"] = replace_all
    add_capture_override(transformer)
    return options


def add_capture_override(transformer):
    """The capture override in (a copy of) transformer_options, around another node's override."""
    current = transformer.get(OVERRIDE_KEY)
    if not getattr(current, "is_ledits_capture", False):
        transformer[OVERRIDE_KEY] = CaptureOverride(current)

