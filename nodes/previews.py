"""Turning latent-size masks and attention maps into ComfyUI MASK / IMAGE values."""
import torch
import torch.nn.functional as F

# anchor colours of a perceptually ordered dark-to-bright map (black, purple, orange, yellow-white)
_ANCHORS = torch.tensor([[0.0, 0.0, 0.02], [0.34, 0.06, 0.43], [0.73, 0.21, 0.33],
                         [0.98, 0.55, 0.04], [0.99, 0.99, 0.75]])
DEFAULT_PIXEL_SCALE = 8           # SD / SDXL / SD3 / Flux.1 / WAN 2.1 VAEs: 8 pixels per latent cell
# hosts without LatentFormat.spacial_downscale_ratio (0.3.64) know their /16 formats only by name
_SCALE_BY_FORMAT = {"Wan22": 16, "Flux2": 16}


def pixel_scale(model):
    """Pixels per latent cell of the model's VAE (WAN 2.2 5B and Flux.2: 16), so that masks come out
    at the picture's size: the host's latent format says it (0.33+), else its class name does."""
    fmt = getattr(getattr(model, "model", None), "latent_format", None)
    ratio = getattr(fmt, "spacial_downscale_ratio", None)
    if isinstance(ratio, int) and ratio > 0:
        return ratio
    for cls in type(fmt).__mro__:
        if cls.__name__ in _SCALE_BY_FORMAT:
            return _SCALE_BY_FORMAT[cls.__name__]
    return DEFAULT_PIXEL_SCALE


def pixel_size(latent_size, scale=DEFAULT_PIXEL_SCALE):
    return (latent_size[0] * scale, latent_size[1] * scale)


def mask_to_pixels(mask, latent_size, scale=DEFAULT_PIXEL_SCALE):
    """(N, 1, h, w) or (N, h, w) mask -> MASK (N, scale*H, scale*W) with nearest upsampling; masks
    with frames (N, 1, T, h, w) give one MASK image per frame (N*T, image-major, as video MASKs are)."""
    if mask.ndim == 3:
        mask = mask[:, None]
    elif mask.ndim == 5:
        mask = mask.transpose(1, 2).reshape(-1, 1, *mask.shape[-2:])
    return F.interpolate(mask.float(), size=pixel_size(latent_size, scale), mode="nearest")[:, 0].cpu()


def colorize(values):
    """(N, H, W) in [0, 1] -> IMAGE (N, H, W, 3) through the anchor colour ramp."""
    v = values.clamp(0, 1) * (len(_ANCHORS) - 1)
    low = v.floor().long().clamp(max=len(_ANCHORS) - 2)
    frac = (v - low.float())[..., None]
    anchors = _ANCHORS.to(values.device)
    return anchors[low] * (1 - frac) + anchors[low + 1] * frac


def heatmap(maps, latent_size, scale=DEFAULT_PIXEL_SCALE):
    """Attention maps (N, h, w) -> IMAGE (N, scale*H, scale*W, 3), each normalised to its own range; maps with
    frames (N, T, h, w) give one image per frame (N*T), normalised per clip so that frames a concept
    has left stay dark."""
    flat = maps.float().reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    norm = ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(-1, *maps.shape[-2:])
    big = F.interpolate(norm[:, None], size=pixel_size(latent_size, scale), mode="bilinear", align_corners=False)[:, 0]
    return colorize(big).cpu()
