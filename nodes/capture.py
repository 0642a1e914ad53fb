"""What every attention-capture adapter shares: the config, the per-call request, and the keys
under which they travel in transformer_options.

An adapter (nodes/unet_capture.py: UNet cross-attention sites; nodes/dit_capture.py: DiT joint
attention) records into a `CaptureRequest` only when the current model call carries one in its
transformer_options. The request lives in a per-call copy of model_options, so nothing leaks
between runs, graphs or cloned models.
"""
import threading
from dataclasses import dataclass

from ..ledits_core import AttentionAccumulator

REQUEST_KEY = "ledits_pp_capture_request"
CONFIG_KEY = "ledits_pp_capture_config"


@dataclass(frozen=True)
class CaptureConfig:
    divisor: int = 4                # UNet: record at the latent/4 level (the references' choice)
    include_middle: bool = False    # UNet: the references skip the middle block
    blocks: str = "auto"            # DiT: which joint-attention blocks (see dit_capture.resolve_blocks)


class CaptureRequest:
    """What to record in one model evaluation: cond index -> (token positions, context length),
    and the map grid (h, w) every recorded map must have."""

    def __init__(self, concepts, grid):
        self.concepts = dict(concepts)
        self.grid = tuple(grid)
        self.maps = AttentionAccumulator()
        self._lock = threading.Lock()   # batches may run in worker threads (multi-GPU hosts)

    def concept_chunks(self, transformer_options, batch):
        """(rows slice, cond index) of every concept chunk in this call's batch."""
        chunks = transformer_options.get("cond_or_uncond") or []
        if not chunks or batch % len(chunks):
            return []
        rows = batch // len(chunks)
        return [(slice(j * rows, (j + 1) * rows), index) for j, index in enumerate(chunks)
                if index in self.concepts]

    def add(self, index, head_sum, heads):
        with self._lock:
            self.maps.add(index, head_sum, heads, self.grid)


def with_request(model_options, request):
    """A copy of model_options whose model calls record into `request`."""
    options, transformer = copy_transformer_options(model_options)
    transformer[REQUEST_KEY] = request
    return options


def copy_transformer_options(model_options):
    """(model_options copy, its transformer_options copy): patches are added to the copies only."""
    options = dict(model_options)
    transformer = dict(options.get("transformer_options", {}))
    options["transformer_options"] = transformer
    return options, transformer


def model_config(model_options):
    return model_options.get("transformer_options", {}).get(CONFIG_KEY, CaptureConfig())

