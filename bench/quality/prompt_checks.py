"""Does a trained tiny model follow its prompt? Two checks on held-out scenes.

* Loss with the true caption vs another scene's caption (shuffled) vs the zero conditioning, at two
  noise levels: a model that reads its prompt predicts better with the true one.
* Generation from noise (Euler, 20 steps, CFG 4 against the zero conditioning): which colours the
  picture contains (a colour is present when >= 4 latent cells are nearest to it, read through the
  encoder's colour map), for the prompted colours vs the colours of a shuffled caption (chance).
"""
import torch
import torch.nn.functional as F

import comfy.samplers

import shapes_models
import shapes_vae
import shapes_world as world

FLOW_LOSS_SIGMA = (0.5, 0.8)
LOSS_SIGMA = {"sd15": (1.0, 3.0)}           # else FLOW_LOSS_SIGMA (every flow layout)
PALETTE = list(world.COLOURS) + list(world.BACKGROUNDS)


def captions_of(model, clip, layout):
    return shapes_models.Captions(clip, layout, shapes_models.zero_for(model, clip, layout))


@torch.no_grad()
def caption_losses(model, captions, layout, variant="full", n=48):
    scenes = world.held_out(n, variant=variant)
    x0 = shapes_models.model_latent(torch.stack([s.image for s in scenes]), layout)
    texts = [s.caption for s in scenes]
    g = torch.Generator().manual_seed(7)
    out = {}
    for level in LOSS_SIGMA.get(layout, FLOW_LOSS_SIGMA):
        sigma = torch.full((n,), level)
        eps = torch.randn(x0.shape, generator=g)
        x = shapes_models.noisy(model.model, x0, sigma, eps)
        target = (x - x0) / level
        row = []
        for variant in (texts, texts[1:] + texts[:1], [None] * n):
            row.append(float(F.mse_loss(shapes_models.predict(model.model, captions, x, sigma, variant), target)))
        out[level] = row
    return out


@torch.no_grad()
def generate(model, captions, texts, steps=20, cfg=4.0, seed=0):
    """Latents (model space) generated for `texts` by Euler on the model's own sigma schedule."""
    m = model.model
    n = len(texts)
    sampling = m.model_sampling
    sigmas = comfy.samplers.calculate_sigmas(sampling, "normal", steps).float()
    shape = shapes_models.model_latent(torch.zeros(n, 3, world.SIZE, world.SIZE), captions.layout).shape
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    x = sampling.noise_scaling(sigmas[0], noise, torch.zeros_like(noise), max_denoise=True)
    for i in range(steps):
        s = torch.full((n,), float(sigmas[i]))
        d_cond = captions.denoised(m, x, s, texts)
        d_zero = captions.denoised(m, x, s, [None] * n)
        denoised = d_zero + cfg * (d_cond - d_zero)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def colours_present(latents, min_cells=4):
    """(n, len(PALETTE)) bool: which palette colours cover >= min_cells latent cells."""
    latents = shapes_vae.cells(latents)
    p = torch.linalg.pinv(shapes_vae.colour_map(latents.shape[1]))
    rgb = torch.einsum("ck,bkhw->bchw", p, latents) + 0.5
    table = torch.tensor([{**world.COLOURS, **world.BACKGROUNDS}[name] for name in PALETTE])
    dist = (rgb[:, None] - table[None, :, :, None, None]).norm(dim=2)      # (n, P, h, w)
    nearest = dist.argmin(1)
    return torch.stack([(nearest == k).flatten(1).sum(1) >= min_cells for k in range(len(PALETTE))], 1)


@torch.no_grad()
def generation_hits(model, captions, variant="full", n=32):
    scenes = world.held_out(n, variant=variant)
    present = colours_present(generate(model, captions, [s.caption for s in scenes]))
    hits = total = chance_hits = chance_total = 0
    for i, s in enumerate(scenes):
        mine = {c for c, _ in s.objects}
        for c in mine:
            hits += bool(present[i, PALETTE.index(c)])
            total += 1
        other = {c for c, _ in scenes[(i + 1) % n].objects} - mine
        for c in other:
            chance_hits += bool(present[i, PALETTE.index(c)])
            chance_total += 1
    return hits / total, chance_hits / max(1, chance_total)


def summary(model, clip, layout, variant="full"):
    captions = captions_of(model, clip, layout)
    losses = caption_losses(model, captions, layout, variant)
    hit, chance = generation_hits(model, captions, variant)
    parts = [f"σ {level:g}: {row[0]:.3f} / {row[1]:.3f} (zero {row[2]:.3f})" for level, row in losses.items()]
    return "; ".join(parts) + f" | {hit:.2f} / {chance:.2f}"
