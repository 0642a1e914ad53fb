"""The edit as a user's graph runs it, in-process: VAE Encode -> LEDITS++ Inversion -> Edit
Concept(s) -> Guided Edit -> VAE Decode, each through the real node class (as the host tests'
conftest runs nodes), plus the baselines the pack or ComfyUI can run themselves.

`per_step_masks()` is bench instrumentation only: while active, Guided Edit's attention record
keeps every step's final (intersect) mask at full latent size instead of 1/4 (the preview size),
so that the mask alternatives of issue #17 can be scored. It changes no edit and no output.
"""
import asyncio
import contextlib
import sys

import torch

import quality_host

import comfy.sample
import comfy.samplers


def pack_module(dotted):
    """The pack's module `dotted` (e.g. "nodes.guider") as ComfyUI's loader imported it, or None."""
    path = str(quality_host.REPO.joinpath(*dotted.split(".")).with_suffix(".py"))
    for name, module in list(sys.modules.items()):
        if name.endswith("." + dotted) and getattr(module, "__file__", "") == path:
            return module
    return None


def node_classes():
    """ComfyUI's NODE_CLASS_MAPPINGS with this pack loaded through ComfyUI's custom-node loader."""
    import utils.extra_config  # noqa: F401  (before nodes, as main.py: comfy/utils.py must not shadow utils)
    import nodes
    if "LEditsPPGuidedEdit" not in nodes.NODE_CLASS_MAPPINGS:
        result = nodes.load_custom_node(str(quality_host.REPO), ignore=set(nodes.NODE_CLASS_MAPPINGS))
        ok = asyncio.run(result) if asyncio.iscoroutine(result) else result
        if not ok or "LEditsPPGuidedEdit" not in nodes.NODE_CLASS_MAPPINGS:
            raise RuntimeError("ComfyUI failed to load the LEDITS++ pack (see the log above)")
    return nodes.NODE_CLASS_MAPPINGS


def run(node_id, **inputs):
    cls = node_classes()[node_id]
    with torch.inference_mode():
        if hasattr(cls, "define_schema"):
            out = cls.execute(**inputs)
            return tuple(out.result if hasattr(out, "result") else out)
        out = getattr(cls(), cls.FUNCTION)(**inputs)
        return tuple(out["result"] if isinstance(out, dict) else out)


@contextlib.contextmanager
def per_step_masks():
    guider = pack_module("nodes.guider")
    if guider is None:
        raise RuntimeError("load the pack first (node_classes())")
    original = guider._pool
    guider._pool = lambda mask: mask[:, 0].float().detach()
    try:
        yield
    finally:
        guider._pool = original


def attention_capture(model, resolution="latent/4", blocks="auto"):
    """MODEL through LEDITS++ Attention Capture at `resolution` (e.g. "latent/2" for the UNet) or
    over chosen DiT `blocks` (e.g. "0")."""
    return run("LEditsPPAttentionCapture", model=model, resolution=resolution, include_middle=False, blocks=blocks)[0]


def encode(vae, image):
    """(3, H, W) in [0, 1] -> LATENT via VAE Encode."""
    return run("VAEEncode", pixels=image.movedim(0, -1)[None], vae=vae)[0]


def decode(vae, latent):
    """LATENT -> (3, H, W) via VAE Decode."""
    return run("VAEDecode", samples=latent, vae=vae)[0][0].movedim(-1, 0).float()


def text(clip, prompt):
    return run("CLIPTextEncode", clip=clip, text=prompt)[0]


def invert(model, latent, steps=30, skip=0.15, seed=0, negative=None):
    """Inversion at the node's defaults; `negative` unconnected (None) means the family's zero
    conditioning, as in a user's graph."""
    extra = {} if negative is None else {"negative": negative}
    return run("LEditsPPInversion", model=model, latent=latent, steps=steps, skip=skip, seed=seed,
               schedule="exact", source_cfg=3.5, **extra)


def concepts(clip, items, **overrides):
    """items: [(text, reverse)] -> CONCEPTS, every concept at the node's defaults unless overridden."""
    chain = None
    for prompt, reverse in items:
        params = dict(scale=5.0, threshold=0.9, warmup=0, cooldown=10000, mask_type="intersect")
        params.update(overrides)
        chain = run("LEditsPPEditConcept", clip=clip, text=prompt, reverse=reverse, concepts=chain, **params)[0]
    return chain


def guided_edit(model, inversion, chain=None, positive=None, cfg=7.5):
    """(LATENT, MASK, ATTENTION record) of LEDITS++ Guided Edit."""
    return run("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=chain, positive=positive,
               cfg=cfg, guidance_rescale=0.0)


def img2img(model, latent, sigmas, positive, negative, cfg, seed=0):
    """ComfyUI's img2img as SamplerCustom runs it (euler, noise from `seed`) over `sigmas`: the
    same start sigma as the edit."""
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, seed)
    sampler = comfy.samplers.sampler_object("euler")
    with torch.inference_mode():
        out = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, samples,
                                         noise_mask=None, disable_pbar=True, seed=seed)
    return {"samples": out}
