"""The values that flow between LEDITS++ nodes. Immutable: ComfyUI caches and reuses them."""
import weakref
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..ledits_core import EditConcept


@dataclass(frozen=True)
class BaseGuidance:
    """The prediction the edit is built on: uncond, or CFG with a prompt on top of it."""
    negative: list                      # CONDITIONING used as the unconditional prediction
    positive: Optional[list] = None     # CONDITIONING of the source/target prompt, or None
    cfg: float = 1.0
    guidance: Optional[float] = None    # distilled guidance of every prediction (Flux dev), else None


@dataclass(frozen=True, eq=False)
class InversionData:
    """LEDITS_INVERSION: everything a replay needs, on the CPU in float32."""
    x_T: torch.Tensor           # (B, C, H, W) start latent in the sampler's (inner) latent space
    zs: torch.Tensor            # (N, B, C, H, W) noise maps in generation order
    sigmas: torch.Tensor        # (N + 1,) the schedule the maps belong to
    base: BaseGuidance          # the guidance the maps were computed with
    seed: int
    schedule: str
    model_ref: weakref.ref = field(repr=False)   # the BaseModel it was made with
    model_name: str = ""

    @property
    def steps(self):
        return int(self.zs.shape[0])

    @property
    def latent_shape(self):
        return tuple(self.x_T.shape)


@dataclass(frozen=True, eq=False)
class ConceptSpec:
    """One edit concept: its text conditioning, where its tokens sit, and its parameters."""
    text: str
    conditioning: list              # CONDITIONING from the CLIP the concept was encoded with
    token_positions: tuple          # positions of the text's own tokens (no BOS/EOS/padding)
    context_length: int             # 77 per prompt chunk
    params: EditConcept             # scale, direction, warmup, cooldown, threshold, mask type
    user_mask: Optional[torch.Tensor] = None   # MASK (B|1, H, W) at pixel size, or None

    @property
    def label(self):
        return ("-" if self.params.reverse else "+") + " " + self.text


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """LEDITS_ATTENTION: per-step attention maps and masks of one edit run (CPU, float32).

    steps[i][c] = (attention map (B, h, w) or None, mask (B, H/4, W/4) or None) for concept c;
    kept small on purpose (attention resolution) so a long run stays cheap to keep and preview.
    """
    labels: tuple
    thresholds: tuple
    latent_size: tuple
    steps: tuple
    final_masks: tuple          # per concept: (B, 1, H, W) latent-size mask of where it edited (>= 10 % of its active steps)
    pixel_scale: int = 8        # pixels per latent cell of the model's VAE (16: Flux.2, WAN 2.2 5B)
