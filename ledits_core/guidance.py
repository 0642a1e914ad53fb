"""Semantic edit guidance: the per-concept terms added to the base prediction.

    pred = base + sum_c [warmup_c <= i < cooldown_c] * M_c * psi_c,
    psi_c = (+/-) scale_c * U_c * (pred_c - pred_u)

The functions are linear in the predictions, so they work unchanged in the eps domain (the
paper's) and in the denoised (x0) domain the sampler uses: D = x - sigma*eps gives
D_c - D_u = -sigma (eps_c - eps_u), and the quantile masks are invariant to that per-sample
positive factor. The base is the unconditional prediction, or target-prompt CFG on top of it.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from .masks import attention_mask, combine_masks, noise_mask, with_frames

MASK_TYPES = ("intersect", "attention", "noise", "none")


@dataclass(frozen=True)
class EditConcept:
    """Parameters of one edit concept (text handling lives in the nodes)."""
    scale: float = 5.0
    reverse: bool = False
    warmup: int = 0
    cooldown: Optional[int] = None      # None: active until the last step
    threshold: float = 0.9
    mask_type: str = "intersect"
    user_mask: Optional[torch.Tensor] = None   # broadcastable to (B, 1, H, W) at latent size

    def __post_init__(self):
        if self.mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}; got {self.mask_type!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1]; got {self.threshold}")
        if self.warmup < 0 or (self.cooldown is not None and self.cooldown < 0):
            raise ValueError("warmup and cooldown must be >= 0")

    @property
    def needs_attention(self):
        return self.mask_type in ("intersect", "attention")


def is_active(concept, step):
    """True while warmup <= step < cooldown (steps counted after the skip, from 0)."""
    return concept.warmup <= step and (concept.cooldown is None or step < concept.cooldown)


def edit_direction(pred_concept, pred_uncond, concept):
    """psi = (+/-) scale * user_mask * (pred_concept - pred_uncond).

    The user mask is applied before the quantile masks, so it shifts their quantiles (as in the
    references)."""
    psi = (pred_concept - pred_uncond) * (-concept.scale if concept.reverse else concept.scale)
    if concept.user_mask is not None:
        psi = psi * concept.user_mask.to(device=psi.device, dtype=psi.dtype)
    return psi


def concept_mask(psi, concept, attention_map=None):
    """The mask of one concept at latent size, (B, 1, [T,] H, W) float, or None for mask_type 'none'."""
    m1 = m2 = None
    if concept.needs_attention:
        if attention_map is None:
            raise ValueError("this concept needs a cross-attention map (mask_type "
                             f"{concept.mask_type!r}) but none was recorded")
        m1 = with_frames(attention_mask(attention_map, concept.threshold, tuple(psi.shape[-2:])), psi)
    if concept.mask_type in ("intersect", "noise"):
        m2 = noise_mask(psi, concept.threshold)
    return combine_masks(m1, m2)


def apply_edit_guidance(base, pred_uncond, pred_concepts, concepts, step, attention_maps=None):
    """Add the masked guidance of every active concept to `base`.

    pred_concepts[c] may be None for a concept that was not evaluated (inactive this step).
    Returns (guided prediction, list of per-concept masks (B, 1, [T,] H, W) or None when inactive;
    an active unmasked concept gets a mask of ones).
    """
    if len(pred_concepts) != len(concepts):
        raise ValueError(f"{len(pred_concepts)} concept predictions for {len(concepts)} concepts")
    attention_maps = attention_maps if attention_maps is not None else [None] * len(concepts)
    guided = base
    masks = []
    for concept, pred, amap in zip(concepts, pred_concepts, attention_maps):
        if pred is None or not is_active(concept, step):
            masks.append(None)
            continue
        psi = edit_direction(pred, pred_uncond, concept)
        mask = concept_mask(psi, concept, amap)
        if mask is None:
            mask = torch.ones_like(psi[:, :1])
        else:
            psi = psi * mask.to(psi.dtype)
        guided = guided + psi
        masks.append(mask)
    return guided, masks


def cfg(pred_uncond, pred_cond, scale):
    """Classifier-free guidance: u + s (c - u) (the intended sign, unlike diffusers' SD inversion)."""
    return pred_uncond + scale * (pred_cond - pred_uncond)


def rescale_guidance(guided_eps, reference_eps, phi):
    """diffusers' rescale_noise_cfg (Lin et al.): match the std of the reference, blend by phi."""
    if phi == 0:
        return guided_eps
    dims = list(range(1, guided_eps.ndim))
    std_ref = reference_eps.std(dim=dims, keepdim=True)
    std_guided = guided_eps.std(dim=dims, keepdim=True).clamp_min(1e-12)
    rescaled = guided_eps * (std_ref / std_guided)
    return phi * rescaled + (1 - phi) * guided_eps
