"""Masks: M1 from cross-attention, M2 from the guidance magnitude, and their intersection.

Per image: threshold at the per-sample quantile (computed in float32, `>=`), so about the top
(1 - threshold) fraction is kept. M1 is smoothed and thresholded at attention resolution and then
upsampled (nearest) to the latent, as the reference code does. Masks are (B, 1, H, W) float and
never mix images of a batch (diffusers does for B > 1). Latents with frames (B, C, T, H, W) get
masks (B, 1, T, H, W): M2 per frame, quantiles over all frames of an image; M1, drawn on one
spatial grid, is the same for every frame. Attention maps with frames (B, T, h, w) -- a video DiT's
token grid -- give M1 per frame (frame_quantile_mask).
"""
import math

import torch
import torch.nn.functional as F

_KERNEL_CACHE = {}


def smoothing_kernel(device=None):
    """3x3 kernel w w^T, w = [e^-1, 1, e^-1] / (1 + 2 e^-1) (nominal sigma 0.5), built in float64
    and rounded once to float32 so it equals the reference bit for bit."""
    key = str(device)
    if key not in _KERNEL_CACHE:
        w = torch.tensor([math.exp(-1.0), 1.0, math.exp(-1.0)], dtype=torch.float64)
        w = w / w.sum()
        _KERNEL_CACHE[key] = torch.outer(w, w).to(torch.float32).to(device)
    return _KERNEL_CACHE[key]


def smooth_attention(maps):
    """Reflect-pad by one cell and apply the 3x3 smoothing kernel: (B, h, w) -> (B, h, w) float32;
    maps with frames (B, T, h, w) are smoothed within each frame, never across time: on the maps of
    frame_quantile_mask a temporal [e^-1, 1, e^-1] kernel helped only still, noisy maps and bled the
    mask into the first frame after a concept left the picture (0.046 -> 0.095 of that frame)."""
    if maps.ndim == 4:
        return smooth_attention(maps.reshape(-1, *maps.shape[-2:])).reshape(maps.shape)
    if maps.ndim != 3:
        raise ValueError(f"attention maps must be (B, h, w); got {tuple(maps.shape)}")
    x = maps.float()[:, None]
    # reflect padding needs at least 2 cells per side; tiny maps fall back to replicate.
    mode = "reflect" if min(x.shape[-2:]) >= 2 else "replicate"
    x = F.pad(x, (1, 1, 1, 1), mode=mode)
    return F.conv2d(x, smoothing_kernel(x.device)[None, None])[:, 0]


def quantile_mask(values, threshold):
    """1 where a value is >= its image's `threshold` quantile (linear interpolation, float32)."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold}")
    flat = values.float().reshape(values.shape[0], -1)
    q = torch.quantile(flat, float(threshold), dim=1, keepdim=True)
    return (flat >= q).to(torch.float32).reshape(values.shape)


def upsample_mask(mask, size):
    """Nearest upsampling of (B, h, w) to (B, 1, H, W)."""
    return F.interpolate(mask.float()[:, None], size=tuple(size), mode="nearest")


def attention_mask(maps, threshold, latent_size, smooth=True):
    """M1: smooth, threshold at attention resolution, upsample to the latent: (B, 1, H, W); maps with
    frames (B, T, h, w) give (B, 1, T, H, W), one mask per frame (frame_quantile_mask)."""
    values = smooth_attention(maps) if smooth else maps.float()
    if values.ndim == 4:
        size = (values.shape[1], *tuple(latent_size)[-2:])
        return F.interpolate(frame_quantile_mask(values, threshold)[:, None], size=size, mode="nearest")
    return upsample_mask(quantile_mask(values, threshold), latent_size)


def frame_quantile_mask(values, threshold):
    """(B, T, h, w) -> 1 where a value is in the top (1 - threshold) of its frame and of its clip.

    Measured on synthetic maps on a 33-frame 480p WAN token grid (9 x 30 x 52; a concept covering
    10 % of a frame over noise, 20 seeds): a quantile per frame alone gives every frame (1 - threshold)
    of mask, frames the concept has left included (there 0.100 vs 0.038 per clip); per clip alone
    lets the frames it left hand their share to noise in the others (IoU in the frames it is in 0.64
    vs 0.93 per frame); both together keep the better of each. One frame: the image rule."""
    frames = quantile_mask(values.reshape(-1, *values.shape[2:]), threshold).reshape(values.shape)
    return frames * quantile_mask(values, threshold)


def noise_magnitude(psi):
    """What M2 thresholds: the channel sum of |psi|, (B, 1, [T,] H, W) float32."""
    return psi.float().abs().sum(dim=1, keepdim=True)


def noise_mask(psi, threshold):
    """M2: threshold the channel sum of |psi| per image: (B, 1, H, W), or (B, 1, T, H, W) for frames."""
    return quantile_mask(noise_magnitude(psi), threshold)


def with_frames(mask, latent):
    """A (B, 1, H, W) mask repeated over the frames of `latent` ((B, C, T, H, W) -> (B, 1, T, H, W),
    a view); unchanged for an image latent."""
    if latent.ndim == mask.ndim:
        return mask
    frames = tuple(latent.shape[2:-2])
    return mask.reshape(*mask.shape[:2], *([1] * len(frames)), *mask.shape[2:]).expand(
        *mask.shape[:2], *frames, *mask.shape[2:])


def combine_masks(m1, m2):
    """Intersection of the masks that exist (None when neither does)."""
    if m1 is None:
        return m2
    if m2 is None:
        return m1
    return m1 * m2


def edited_region(mask_sum, active_steps, share=0.1):
    """The cells a concept edited in at least `share` of its active steps, from the sum of its
    per-step masks. The last step's mask alone is a poor answer to "where did the edit act": a
    removal's last steps come after the object is gone. On eight trained tiny models (SD3, Flux,
    UNet) that mask met the removed object with IoU 0.00-0.17, this one with 0.11-0.54, best or
    close to the best of the alternatives measured (bench/quality/README.md, third measurement).
    Sums of 0/1 masks are whole numbers, so the comparison has no float tie to fall on."""
    if mask_sum is None or active_steps == 0:
        return None
    return (mask_sum >= share * active_steps - 1e-3).to(mask_sum.dtype)


def resize_user_mask(mask, latent_size, batch):
    """A ComfyUI MASK ((H, W) or (B|1, H, W), pixel size) as (batch, 1, h, w) at latent size."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"a MASK must be (B, H, W); got {tuple(mask.shape)}")
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"the mask has {mask.shape[0]} images but the latent batch has {batch}")
    resized = F.interpolate(mask.float()[:, None], size=tuple(latent_size), mode="bilinear",
                            align_corners=False)
    return resized.expand(batch, -1, -1, -1).clone()
