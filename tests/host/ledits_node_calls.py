"""The pack's nodes called the way every family test calls them (one place, so a change of a
node's inputs is one change here), and a foreign attention override that records what it saw."""
import torch


def seeded_latent(*shape, seed=0):
    """A LATENT of standard-normal samples of `shape` (batch, channels, [frames,] h, w)."""
    return {"samples": torch.randn(*shape, generator=torch.Generator().manual_seed(seed))}


def invert(run_node, model, latent, steps, negative=None, seed=0, skip=0.15, **extra):
    return run_node("LEditsPPInversion", model=model, latent=latent, steps=steps, skip=skip, seed=seed,
                    schedule="exact", source_cfg=3.5, negative=negative, **extra)


def concepts_for(run_node, clip, specs, threshold=0.8, mask=None):
    """A concept chain from (text, scale, reverse, mask_type) specs, all at one threshold."""
    chain = None
    for text, scale, reverse, mask_type in specs:
        chain = run_node("LEditsPPEditConcept", clip=clip, text=text, scale=scale, threshold=threshold,
                         reverse=reverse, warmup=0, cooldown=10000, mask_type=mask_type, concepts=chain,
                         mask=mask)[0]
    return chain


def guided_edit(run_node, model, inversion, concepts=None, cfg=7.5, **extra):
    return run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=concepts, cfg=cfg,
                    guidance_rescale=0.0, **extra)


def max_abs(a, b):
    return (a - b).abs().max().item()


class CallRecorder:
    """A foreign optimized_attention_override (another node's): records (conds, q, k, heads) of
    every attention call, then attends."""

    def __init__(self):
        self.seen = []

    def __call__(self, func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        self.seen.append((list(options.get("cond_or_uncond", [])), args[0].detach().clone(),
                          args[1].detach().clone(), args[3] if len(args) > 3 else kwargs["heads"]))
        return func(*args, **kwargs)
