"""The DiT block study's capture, through the pack's own code: the family object of
nodes/families/<family>.py installs its capture (block labels, nodes/dit_capture.py, or call
order, nodes/dit_call_order.py) for a block spec, exactly as the Attention Capture node does, and
its capture request records the concept maps. So a block set's map here is what a user gets with
that `blocks` setting ("auto" included).
"""
import importlib
import importlib.util
import os
import sys

from dit_block_models import REPO

PACKAGE = "ledits_pp_block_study"


def pack():
    """The repo imported as a package (its modules use relative imports), once per process."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(REPO, "__init__.py"),
                                                      submodule_search_locations=[REPO])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def _module(name):
    pack()
    return importlib.import_module(f"{PACKAGE}.{name}")


def family_object(fam):
    """The nodes/families object of a tiny model (SD3, FLUX, LUMINA2, QWEN_IMAGE, HIDREAM, FLUX2)."""
    return getattr(_module("nodes.families"), fam.pack_family)


def resolved_blocks(fam, spec):
    """The run-order block indices a `blocks` spec selects on this model, by the pack's rule."""
    family = family_object(fam)
    return _module("nodes.dit_capture").resolve_blocks(spec, len(family.joint_blocks(fam.net)),
                                                       family.default_blocks(fam.net))


def capture_maps(fam, x, sigma, tokens, slots, spec):
    """One forward of `fam` over rows (x, sigma, tokens) for every concept slot at once (the rows
    repeated per slot, each copy one cond chunk), with the pack's capture for block spec `spec`.
    Returns {slot index: (rows, cells) map}, the head- and block-mean M1 map the pack records."""
    family = family_object(fam)
    capture = _module("nodes.capture")
    config = capture.CaptureConfig(blocks=spec)
    options = family.install_capture({}, fam.net, config)
    concepts = {j: fam.concept(slot) for j, slot in enumerate(slots)}
    request = family.capture_request(concepts, (fam.size, fam.size), config, fam.net)
    transformer = capture.with_request(options, request)["transformer_options"]
    transformer["cond_or_uncond"] = list(range(len(slots)))
    n = len(slots)
    fam(x.repeat(n, 1, 1, 1), sigma.repeat(n), tokens.repeat(n, 1), transformer)
    out = {}
    for j in range(n):
        amap = request.maps.map(j)
        if amap is None:
            raise RuntimeError(f"{fam.kind}: the pack recorded no map for blocks {spec!r}")
        out[j] = amap.reshape(amap.shape[0], -1)
    return out
