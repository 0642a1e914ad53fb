"""What the LEDITS++ nodes show on the canvas after a run (ComfyUI "UI outputs").

* Mask previews (GuidedEdit, MaskFromAttention): each concept's output mask, coloured per concept,
  over a cheap preview of the image -- the edited latent through the model's latent2rgb factors
  (no VAE decode) -- with a legend (colour, +/- direction, concept text, mask coverage). Saved as
  temp PNGs through the host's standard `ui.PreviewImage`, so no JavaScript is needed to see them.
* Per-step scrubber data (GuidedEdit): a compact payload under the custom UI key
  ``ledits_pp_steps`` that web/js/ledits_pp.js draws under a step slider. Per recorded step it
  holds, for every concept and image, the pooled mask and the cross-attention map as uint8 at the
  recording resolution (latent/4, e.g. 16x16 for a 512 px SD1.5 image), base64 encoded:
  ``bytes per step = concepts x batch x frames x (h*w + h*w)`` (512 B per concept and image at
  512 px, 2 KiB at 1024 px), capped at MAX_PAYLOAD_BYTES for the whole run (maps are halved to 8
  cells a side, then frames thinned to 4, maps halved to 4 cells, steps thinned, until it fits).
* Clips (latents (B, C, T, h, w) with T > 1, e.g. WAN): the mask preview is a strip of up to
  STRIP_FRAMES evenly spaced latent frames per image (first and last included), the legend's
  coverage is the whole clip's; the scrubber payload carries up to MAX_FRAMES evenly spaced latent
  frames (a frame slider in the JS) with one latent-size background PNG per image and frame.

Nothing here may break an edit: the nodes call `safe(...)`, which logs and returns no UI on error.
"""
import base64
import io as _bytes_io
import logging
import weakref

import torch
import torch.nn.functional as F

UI_KEY = "ledits_pp_steps"
PAYLOAD_VERSION = 2                # 2: a frame axis (version 1 payloads are images: one frame)
MAX_PAYLOAD_BYTES = 1 << 20        # raw uint8 bytes of masks + maps for one run (before base64)
MAX_GRID = 64                      # longest side of a per-step map
PREVIEW_TARGET = 384               # preview images are scaled so their longer side is about this
LEGEND_ROW = 18
MIN_PREVIEW_WIDTH = 224
MAX_FRAMES = 16                    # latent frames of a clip in the scrubber payload
STRIP_FRAMES = 8                   # latent frames of a clip in its mask preview image
STRIP_COLUMNS = 2                  # two a row: the legend stays readable at a node's width
STRIP_TILE = 160                   # longer side of one frame of the strip

# distinct, colour-blind-friendlier hues (Okabe-Ito order, then extras); concept i uses PALETTE[i % n]
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#FFFFFF")
OVERLAY_ALPHA = 0.55

# the preview background of each AttentionRecord (kept only while the record itself is alive,
# i.e. while ComfyUI caches the GuidedEdit output), so MaskFromAttention can draw on it too
_BACKGROUNDS = weakref.WeakKeyDictionary()


def safe(fn, *args, **kwargs):
    """fn(*args) or None when it fails: a preview must never cost the user their edit."""
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 -- logged, the node's real outputs are unaffected
        logging.getLogger("ledits_pp").warning("LEDITS++: could not build the node preview", exc_info=True)
        return None


def hex_rgb(color):
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def concept_color(index):
    return PALETTE[index % len(PALETTE)]


# ---------------------------------------------------------------------------------------------
# background: latent2rgb of a latent (no VAE)
# ---------------------------------------------------------------------------------------------
def latent_rgb(model, samples):
    """Outer-space LATENT samples (B, C, h, w) -> (B, h, w, 3) in [0, 1] via the model's latent2rgb
    factors (what ComfyUI's "latent2rgb" live preview uses); a grey-scale fallback otherwise. Clips
    (B, C, T, h, w) with T > 1 give (B, T, h, w, 3); a single frame (B, C, 1, h, w) is an image."""
    x = samples.detach().float().cpu()
    base = getattr(model, "model", None)
    fmt = getattr(base, "latent_format", None)
    factors = getattr(fmt, "latent_rgb_factors", None)
    if base is not None and factors is not None and len(factors) == x.shape[1]:
        inner = base.process_latent_in(x.clone()).float().cpu()
        weight = torch.tensor(factors, dtype=torch.float32).t()            # (3, C)
        bias = getattr(fmt, "latent_rgb_factors_bias", None)
        bias = torch.tensor(bias, dtype=torch.float32) if bias is not None else None
        rgb = F.linear(inner.movedim(1, -1), weight, bias)                 # (B, [T,] h, w, 3)
        return _single_frame(((rgb + 1.0) / 2.0).clamp(0, 1))
    grey = x.mean(dim=1)
    flat = grey.reshape(grey.shape[0], -1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    grey = ((flat - lo) / (hi - lo).clamp_min(1e-6)).reshape(grey.shape)
    return _single_frame(grey[..., None].expand(*grey.shape, 3).clone())


def _single_frame(rgb):
    return rgb[:, 0] if rgb.ndim == 5 and rgb.shape[1] == 1 else rgb


def first_frame(t):
    """(B, C, T, h, w) -> (B, C, h, w): the first frame of a frame latent or mask."""
    return t[:, :, 0] if t.ndim == 5 else t


def is_clip(background):
    """Backgrounds of clips are (B, T, h, w, 3); of images (B, h, w, 3)."""
    return background.ndim == 5


def spread(total, most):
    """Up to `most` evenly spaced indices of range(total), first and last included."""
    if total <= most:
        return list(range(total))
    return torch.linspace(0, total - 1, most).round().long().unique().tolist()


def neutral_background(batch, latent_size, frames=1):
    return torch.full((batch, *([frames] if frames > 1 else []), *latent_size, 3), 0.35)


def remember_background(record, background):
    try:
        _BACKGROUNDS[record] = background
    except TypeError:
        pass


def background_for(record, batch, frames=1):
    background = _BACKGROUNDS.get(record) if record is not None else None
    if background is None or background.shape[0] != batch or (background.shape[1] if is_clip(background) else 1) != frames:
        return neutral_background(batch, tuple(record.latent_size), frames)
    return background


# ---------------------------------------------------------------------------------------------
# mask previews (standard PreviewImage)
# ---------------------------------------------------------------------------------------------
def preview_scale(latent_size, target=PREVIEW_TARGET):
    return max(1, min(8, round(target / max(latent_size))))


def _font():
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=13)
    except TypeError:              # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def overlay_masks(background, masks, colors, target=PREVIEW_TARGET):
    """background (h, w, 3), masks [(h, w) in [0, 1] or None] -> (H, W, 3) at preview size."""
    scale = preview_scale(background.shape[:2], target)
    size = (background.shape[0] * scale, background.shape[1] * scale)
    image = F.interpolate(background.movedim(-1, 0)[None], size=size, mode="bilinear",
                          align_corners=False)[0].movedim(0, -1).clamp(0, 1)
    image = image * 0.8 + 0.1          # keep colours readable on black/white images
    for mask, color in zip(masks, colors):
        if mask is None:
            continue
        m = F.interpolate(mask.float()[None, None], size=size, mode="nearest")[0, 0].clamp(0, 1)
        alpha = (m * OVERLAY_ALPHA)[..., None]
        image = image * (1 - alpha) + torch.tensor(hex_rgb(color)) * alpha
        edge = _edges(m > 0.5)
        image[edge] = torch.tensor(hex_rgb(color))
    return image


def _edges(binary):
    """Pixels of a boolean (H, W) region that touch its outside (a 1-px outline)."""
    padded = F.pad(binary[None, None].float(), (1, 1, 1, 1), mode="replicate")
    eroded = -F.max_pool2d(-padded, 3, stride=1)[0, 0]
    return binary & (eroded < 0.5)


def _with_legend(image, rows, captions=()):
    """Append a legend strip (rows of (colour, text)) under an (H, W, 3) image -> PIL image;
    captions [(x, y, text)] are written on the image (frame numbers of a strip)."""
    from PIL import Image, ImageDraw
    h, w = image.shape[:2]
    width = max(w, MIN_PREVIEW_WIDTH)
    canvas = Image.new("RGB", (width, h + LEGEND_ROW * len(rows) + 6), (24, 24, 24))
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    canvas.paste(Image.fromarray(pixels), ((width - w) // 2, 0))
    draw, font = ImageDraw.Draw(canvas), _font()
    for x, y, text in captions:
        draw.text(((width - w) // 2 + x + 3, y + 2), text, fill=(250, 250, 250), font=font, stroke_width=1,
                  stroke_fill=(0, 0, 0))
    for i, (color, text) in enumerate(rows):
        y = h + 4 + i * LEGEND_ROW
        draw.rectangle([6, y + 2, 18, y + 14], fill=color, outline=(230, 230, 230))
        draw.text((24, y + 1), text, fill=(235, 235, 235), font=font)
    return canvas


def legend_text(label, mask):
    cover = "" if mask is None else f"  {100.0 * float(mask.float().mean()):.0f}%"
    sign, text = (label[0], label[2:]) if label[:2] in ("+ ", "- ") else ("+", label)
    return f"{sign} {text}{cover}" if mask is not None else f"{sign} {text}  (never active)"


def _frame_strip(background, masks, colors):
    """One clip: (T, h, w, 3) and masks [(T, h, w) or None] -> (H, W, 3) tiles of up to STRIP_FRAMES
    frames, STRIP_COLUMNS a row, and their captions."""
    frames = background.shape[0]
    tiles = [(t, overlay_masks(background[t], [None if m is None else m[t] for m in masks], colors, STRIP_TILE))
             for t in spread(frames, STRIP_FRAMES)]
    th, tw, gap = tiles[0][1].shape[0], tiles[0][1].shape[1], 4
    columns = min(STRIP_COLUMNS, len(tiles))
    rows = -(-len(tiles) // columns)
    image = torch.zeros(rows * (th + gap) - gap, columns * (tw + gap) - gap, 3)
    captions = []
    for k, (t, tile) in enumerate(tiles):
        y, x = (k // columns) * (th + gap), (k % columns) * (tw + gap)
        image[y:y + th, x:x + tw] = tile
        captions.append((x, y, f"frame {t + 1}/{frames}"))
    return image, captions


def mask_preview_images(background, concept_masks, labels, indices=None):
    """IMAGE (B, H, W, 3): every concept's mask (B, 1, h, w) over each image, with a legend. Clips
    (background (B, T, h, w, 3), masks (B, 1, T, h, w)): a strip of frames per image."""
    indices = list(range(len(labels))) if indices is None else list(indices)
    colors = [concept_color(i) for i in indices]
    pictures = []
    for b in range(background.shape[0]):
        masks = [None if m is None else m[min(b, m.shape[0] - 1), 0] for m in concept_masks]
        captions = ()
        if is_clip(background):
            masks = [None if m is None else m.expand(background.shape[1], *m.shape[-2:]) for m in masks]
            image, captions = _frame_strip(background[b], masks, colors)
        else:
            image = overlay_masks(background[b], masks, colors)
        rows = [(color, legend_text(labels[i], mask)) for color, i, mask in zip(colors, indices, masks)]
        pictures.append(_with_legend(image, rows or [("#444444", "no concepts")], captions))
    width = max(p.size[0] for p in pictures)
    height = max(p.size[1] for p in pictures)
    out = torch.zeros(len(pictures), height, width, 3)
    for b, p in enumerate(pictures):
        t = torch.frombuffer(bytearray(p.tobytes()), dtype=torch.uint8).reshape(p.size[1], p.size[0], 3)
        out[b, :p.size[1], :p.size[0]] = t.float() / 255.0
    return out


def preview_images_ui(images):
    """{"images": [...], "animated": [...]} through the host's PreviewImage (temp folder)."""
    from comfy_api.latest import ui
    return dict(ui.PreviewImage(images).as_dict())


# ---------------------------------------------------------------------------------------------
# per-step scrubber payload
# ---------------------------------------------------------------------------------------------
def _grid_of(record):
    for step in record.steps:
        for attn, mask in step:
            if mask is not None:
                return tuple(mask.shape[-2:])
            if attn is not None:
                return tuple(attn.shape[-2:])
    return None


def _fit(t, grid):
    """(B, h, w) -> (B, *grid) (area average when shrinking, nearest when growing)."""
    t = t.float()
    if tuple(t.shape[-2:]) == tuple(grid):
        return t
    mode = "area" if t.shape[-1] >= grid[1] else "nearest"
    return F.interpolate(t[:, None], size=grid, mode=mode)[:, 0]


def _to_u8(t, normalise):
    """uint8 of [0, 1] values; `normalise` stretches each row of the first axis to [0, 1] first."""
    t = t.float()
    if normalise:
        flat = t.reshape(t.shape[0], -1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        t = ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(t.shape)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8)


def _png_data_url(rgb):
    from PIL import Image
    buffer = _bytes_io.BytesIO()
    pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def step_payload(record, background, max_bytes=MAX_PAYLOAD_BYTES):
    """The scrubber's data for one GuidedEdit run (a JSON-able dict), or None without concepts."""
    concepts = len(record.labels)
    grid = _grid_of(record)
    if concepts == 0 or grid is None or not record.steps:
        return None
    batch = background.shape[0]
    total_frames = background.shape[1] if is_clip(background) else 1
    frames = spread(total_frames, MAX_FRAMES)
    while max(grid) > MAX_GRID:
        grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
    step_ids = list(range(len(record.steps)))

    def size(g, n):
        return n * concepts * batch * len(frames) * 2 * g[0] * g[1]
    for smallest in (8, 4):      # maps down to 8 cells a side, then fewer frames (4 or more), then 4 cells
        while size(grid, len(step_ids)) > max_bytes and min(grid) > smallest:
            grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        if size(grid, len(step_ids)) > max_bytes and len(frames) > 4:
            fit = len(frames) * max_bytes // size(grid, len(step_ids))
            frames = [frames[i] for i in spread(len(frames), max(4, fit))]
    if size(grid, len(step_ids)) > max_bytes:
        keep = max(2, max_bytes // size(grid, 1))
        picks = torch.linspace(0, len(step_ids) - 1, keep).round().long().unique().tolist()
        step_ids = [step_ids[i] for i in picks]

    cells = grid[0] * grid[1]
    data = torch.zeros(len(step_ids), concepts, batch, len(frames), 2, cells, dtype=torch.uint8)
    flags = []
    for n, i in enumerate(step_ids):
        row = []
        for c in range(concepts):
            attn, mask = record.steps[i][c]
            bits = 0
            if mask is not None:
                data[n, c, :, :, 0] = _to_u8(_frame_rows(mask, batch, frames, grid), False)
                bits |= 1
            if attn is not None:     # normalised per image over its whole clip: frames a concept left stay dark
                data[n, c, :, :, 1] = _to_u8(_frame_rows(attn, batch, frames, grid), True)
                bits |= 2
            row.append(bits)
        flags.append(row)
    pictures = background if is_clip(background) else background[:, None]
    return {
        "version": PAYLOAD_VERSION,
        "labels": list(record.labels),
        "colors": [concept_color(c) for c in range(concepts)],
        "thresholds": [float(t) for t in record.thresholds],
        "batch": batch,
        "grid": list(grid),
        "steps": [int(i) for i in step_ids],
        "total_steps": len(record.steps),
        "frames": [int(t) for t in frames],               # latent frames shown (images: [0])
        "total_frames": int(total_frames),
        "flags": flags,                                   # per step, per concept: 1 mask, 2 attention
        "layout": "step,concept,image,frame,[mask|attention],h,w uint8",
        "bytes_per_step": concepts * batch * len(frames) * 2 * cells,
        "data": base64.b64encode(data.numpy().tobytes()).decode("ascii"),
        "backgrounds": [_png_data_url(pictures[b, t]) for b in range(batch) for t in frames],   # image-major
    }


def _frame_rows(t, batch, frames, grid):
    """A recorded map or mask (B, h, w), (B, 1, h, w) or per frame (B, T, h, w) -> (B, F, cells) of the
    chosen frames on the payload grid (an image's map stands for every frame)."""
    t = t.detach().float().cpu()
    if t.ndim == 3:
        t = t[:, None]
    elif t.ndim == 5:
        t = t[:, 0]
    if t.shape[0] != batch:
        t = t[:1].expand(batch, *t.shape[1:])
    t = t[:, [min(f, t.shape[1] - 1) for f in frames]]
    return _fit(t.reshape(-1, *t.shape[-2:]), grid).reshape(batch, len(frames), -1)


# ---------------------------------------------------------------------------------------------
# what the nodes call
# ---------------------------------------------------------------------------------------------
def guided_edit_ui(model, edited, record, final_masks):
    """UI dict of LEditsPPGuidedEdit: mask previews + scrubber payload."""
    background = latent_rgb(model, edited)
    remember_background(record, background)
    masks = [None if m is None else _preview_mask(m, background) for m in final_masks]
    ui = preview_images_ui(mask_preview_images(background, masks, list(record.labels)))
    payload = step_payload(record, background)
    if payload is not None:
        ui[UI_KEY] = [payload]
    return ui


def mask_node_ui(record, indices, masks):
    """UI dict of LEditsPPMaskFromAttention: the masks it made (latent size, (B, 1, h, w) each)."""
    batch = masks[0].shape[0] if masks else 1
    frames = masks[0].shape[2] if masks and masks[0].ndim == 5 else 1
    background = background_for(record, batch, frames)
    masks = [_preview_mask(m, background) for m in masks]
    return preview_images_ui(mask_preview_images(background, masks, list(record.labels), indices))


def _preview_mask(mask, background):
    """Masks of clips keep their frames (B, 1, T, h, w); of images and single frames: (B, 1, h, w)."""
    return mask if is_clip(background) and mask.ndim == 5 else first_frame(mask)
