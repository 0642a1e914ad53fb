"""Block labels from call order, for DiTs whose blocks have no "dit" replace patch (Z-Image /
Lumina 2's NextDiT, HiDream): the BlockLabel of nodes/dit_capture.py cannot reach them, and the
hosts label their attention calls inconsistently (0.33 gives NextDiT's main layers a block_index,
0.3.64 nothing; HiDream none on either), so nothing of the model's own code is relied on.

* `CallOrderWrapper`: a WrappersMP.DIFFUSION_MODEL wrapper (comfy.patcher_extension; every DiT's
  forward runs through it on both hosts) in a copy of model_options. Per forward it asks the
  family for the forward's `TokenLayout` and puts a fresh `JointCalls` counter into a copy of the
  forward's transformer_options, so counts never leak between forwards, conds, steps or runs.
* `JointCalls`: the CaptureOverride of nodes/dit_capture.py hands it every attention call of that
  forward; it counts the joint ones (query and key sequences of the layout's length: single-stream
  refiner calls have one stream only, so they are never counted) and returns the layout for the
  chosen blocks, whose concept rows are then recorded.

A family using it says, besides joint_blocks (one entry per joint block, in run order) and
default_blocks:
* `token_layout(diffusion_model, args, kwargs)`: the TokenLayout of the joint calls of the forward
  called with args/kwargs (the arguments of the network's forward), or None when it cannot tell
  (nothing is recorded then, and the edit says so). Lumina / Z-Image: [text; pad; image; pad];
  an image-first DiT (HiDream) puts image_start at 0 and its text after the image.
* `install_capture(...)`: `return dit_call_order.install_capture(model_options, self, ...)`.
"""
import comfy.patcher_extension

from .capture import copy_transformer_options
from .dit_capture import ORDER_KEY, add_capture_override, resolve_blocks

DIFFUSION_MODEL = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
WRAPPER_KEY = "ledits_pp_call_order"


class JointCalls:
    """One forward's joint-call counter: which block a joint attention call belongs to."""

    def __init__(self, layout, chosen):
        self.layout = layout
        self.chosen = chosen
        self.count = 0

    def chosen_layout(self, args, kwargs):
        """Count this call if it is joint; its TokenLayout if it belongs to a chosen block."""
        axis = 2 if kwargs.get("skip_reshape", False) else 1     # (B, heads, T, d) or (B, T, heads*d)
        if args[0].shape[axis] != self.layout.length or args[1].shape[axis] != self.layout.length:
            return None
        index, self.count = self.count, self.count + 1
        return self.layout if index in self.chosen else None


class CallOrderWrapper:
    """WrappersMP.DIFFUSION_MODEL wrapper: a fresh JointCalls per forward of the network."""

    def __init__(self, family, chosen):
        self.family = family
        self.chosen = frozenset(chosen)

    def __call__(self, executor, *args, **kwargs):
        layout = self.family.token_layout(executor.class_obj, args, kwargs)
        if layout is not None:
            args, kwargs = _with_options(args, kwargs, {ORDER_KEY: JointCalls(layout, self.chosen)})
        return executor(*args, **kwargs)


def _with_options(args, kwargs, extra):
    """args, kwargs with `extra` in a copy of the forward's transformer_options: a keyword on most
    DiTs, HiDream's last positional argument (the dict that carries the wrappers)."""
    options = kwargs.get("transformer_options")
    if isinstance(options, dict):
        return args, dict(kwargs, transformer_options={**options, **extra})
    for i in reversed(range(len(args))):
        if isinstance(args[i], dict) and "wrappers" in args[i]:
            return args[:i] + ({**args[i], **extra},) + args[i + 1:], kwargs
    return args, kwargs


def install_capture(model_options, family, diffusion_model, config):
    """A copy of model_options with the call-order wrapper for the chosen blocks (replacing an
    earlier capture's: this config decides) and the capture override around any other node's;
    the given dict and its nested wrapper dicts are left untouched."""
    options, transformer = copy_transformer_options(model_options)
    chosen = resolve_blocks(config.blocks, len(family.joint_blocks(diffusion_model)),
                            family.default_blocks(diffusion_model))
    wrappers = dict(transformer.get("wrappers", {}))
    wrappers[DIFFUSION_MODEL] = dict(wrappers.get(DIFFUSION_MODEL, {}),
                                     **{WRAPPER_KEY: [CallOrderWrapper(family, chosen)]})
    transformer["wrappers"] = wrappers
    add_capture_override(transformer)
    return options
