"""LEditsPPMaskFromAttention: binary masks and heat-maps from a recorded edit run."""
import torch
from comfy_api.latest import io

from ..ledits_core import attention_mask, smooth_attention
from .io_types import CATEGORY, Attention
from .previews import heatmap, mask_to_pixels
from .ui_outputs import mask_node_ui, safe

NODE = "LEDITS++ Mask From Attention"


def pick_step(record, concept, step):
    """The attention map of `concept` at `step` (-1: the last step that recorded one)."""
    steps = record.steps
    if step >= len(steps):
        raise ValueError(f"{NODE}: step {step} does not exist; the run recorded {len(steps)} steps")
    candidates = range(len(steps) - 1, -1, -1) if step < 0 else [step]
    for i in candidates:
        amap = steps[i][concept][0]
        if amap is not None:
            return amap
    return None


class LEditsPPMaskFromAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPMaskFromAttention",
            display_name="LEDITS++ Mask From Attention",
            category=CATEGORY,
            description="Turns the attention recorded by LEDITS++ Guided Edit into a MASK per concept "
                        "and image (clips: per frame; smoothing, quantile threshold, upsampling as "
                        "LEDITS++ does) plus a heat-map IMAGE, e.g. to drive inpainting or compositing.",
            inputs=[
                Attention.Input("attention", tooltip="The `attention` output of LEDITS++ Guided Edit."),
                io.Int.Input("concept", default=-1, min=-1, max=63,
                             tooltip="Concept index in the chain (0 = first); -1 = all concepts."),
                io.Int.Input("step", default=-1, min=-1, max=1000,
                             tooltip="Edit step whose attention is used; -1 = the last recorded step."),
                io.Float.Input("threshold", default=-1.0, min=-1.0, max=1.0, step=0.01,
                               tooltip="Quantile threshold; -1 = each concept's own threshold."),
                io.Boolean.Input("smoothing", default=True,
                                 tooltip="3x3 Gaussian smoothing before thresholding (as LEDITS++; clips: within "
                                         "each frame)."),
                io.Combo.Input("resolution", options=["image", "latent"], default="image",
                               tooltip="Size of the MASK. image: the picture's size (the model's VAE scale: 8 or, "
                                       "for Flux.2 and WAN 2.2 5B, 16 pixels per latent cell). latent: the "
                                       "latent's cells."),
            ],
            outputs=[
                io.Mask.Output(display_name="mask",
                               tooltip="Binary masks, concept-major (c0 img0, c0 img1, ...); clips: one per "
                                       "latent frame (c0 img0 f0, c0 img0 f1, ...)."),
                io.Image.Output(display_name="heatmap",
                                tooltip="The attention maps as colour images (clips: one per frame, "
                                        "normalised per clip)."),
            ],
        )

    @classmethod
    def execute(cls, attention, concept, step, threshold, smoothing, resolution) -> io.NodeOutput:
        count = len(attention.labels)
        if count == 0:
            raise ValueError(f"{NODE}: the edit had no concepts, so there is no attention to turn into a mask")
        if concept >= count:
            raise ValueError(f"{NODE}: concept {concept} does not exist; the edit had {count} (0..{count - 1})")
        chosen = range(count) if concept < 0 else [concept]
        latent_size = tuple(attention.latent_size)
        masks, maps = [], []
        for c in chosen:
            amap = pick_step(attention, c, step)
            if amap is None:
                raise ValueError(f"{NODE}: no attention was recorded for concept {c} "
                                 f"('{attention.labels[c]}') at that step; its mask_type must be "
                                 "'intersect' or 'attention' and the step inside its warmup/cooldown")
            level = attention.thresholds[c] if threshold < 0 else threshold
            masks.append(attention_mask(amap, level, latent_size, smooth=smoothing))
            maps.append(smooth_attention(amap) if smoothing else amap.float())    # (B, [T,] h, w)
        ui = safe(mask_node_ui, attention, list(chosen), masks)   # the masks over the image, with a legend
        mask = torch.cat(masks)
        if resolution == "image":
            mask = mask_to_pixels(mask, latent_size, attention.pixel_scale)
        else:
            mask = mask.reshape(-1, *mask.shape[-2:]).cpu()      # one per image (and frame)
        return io.NodeOutput(mask, heatmap(torch.cat(maps), latent_size, attention.pixel_scale), ui=ui)
