"""The edit list of the quality measurement and how each edit is scored on pixels.

Edits per held-out scene (the object edited is the caption's first):
  remove      "- red square"
  change      "- red square", "+ <colour not in the scene> square"
  add         "+ <colour not in the scene> <shape>"
  background  "- green field", "+ <another background>"
Scores, all on 128 px pictures in [0, 1]:
  success     pixels of the edit's region show what was asked (nearest palette colour fractions
              inside the object eroded by 2 px; for `add`: at least ADD_MIN_PIXELS pixels of the
              new colour appear; for `background`: most background pixels take the new colour);
  change      mean abs difference x 255 outside the edit's region dilated by 6 px (for
              `background`: inside the eroded objects), against the input and against the VAE
              round trip (= the no-concept replay, which is exact: the edit's own change);
  mask        IoU / coverage of a mask against the true region.
"""
import dataclasses

import torch
import torch.nn.functional as F

import shapes_world as world

ERODE, DILATE = 2, 6
ADD_MIN_PIXELS = 300           # a disc of ~20 px; objects are >= 28 px


@dataclasses.dataclass
class Edit:
    name: str
    items: list                # [(text, reverse)]
    target_caption: str        # for the prompt-only and img2img baselines
    region: torch.Tensor       # (H, W) bool: the true region (empty for `add`)
    new: str = ""              # colour or background asked for


def _unused(names, used, seed):
    free = [n for n in names if n not in used]
    return free[seed % len(free)]


def edits(scene):
    colour, shape = scene.objects[0]
    rest = scene.objects[1:]
    used = {c for c, _ in scene.objects}
    words = world.VARIANTS[scene.variant]                   # edits use the words the model learned
    new_colour = _unused(list(words["colours"]), used, scene.seed)
    new_shape = words["shapes"][scene.seed % len(words["shapes"])]
    new_bg = _unused(list(words["backgrounds"]), {scene.background}, scene.seed)
    phrase = world.object_phrase(colour, shape)
    without = world.caption(rest, scene.background) if rest else f"a {scene.background}"
    empty = torch.zeros_like(scene.masks[0])
    return [
        Edit("remove", [(phrase, True)], without, scene.masks[0]),
        Edit("change", [(phrase, True), (world.object_phrase(new_colour, shape), False)],
             world.caption([(new_colour, shape)] + rest, scene.background), scene.masks[0], new_colour),
        Edit("add", [(world.object_phrase(new_colour, new_shape), False)],
             world.caption(scene.objects + [(new_colour, new_shape)], scene.background), empty, new_colour),
        Edit("background", [(scene.background, True), (new_bg, False)], world.caption(scene.objects, new_bg),
             ~scene.masks.any(0), new_bg),
    ]


def grow(mask, pixels):
    return F.max_pool2d(mask[None, None].float(), 2 * pixels + 1, 1, pixels)[0, 0].bool()


def shrink(mask, pixels):
    return ~grow(~mask, pixels)


def fractions(image, region, names):
    """Fraction of `region`'s pixels nearest to each of `names` (palette colours / backgrounds)."""
    nearest = world.nearest_colour(image, names)[region]
    return {name: float((nearest == k).float().mean()) if nearest.numel() else 0.0 for k, name in enumerate(names)}


def success(edit, scene, output):
    colour = scene.objects[0][0]
    if edit.name == "remove":
        f = fractions(output, shrink(edit.region, ERODE), list(world.COLOURS) + [scene.background])
        return f[colour] < 0.2 and f[scene.background] > 0.5
    if edit.name == "change":
        f = fractions(output, shrink(edit.region, ERODE), list(world.COLOURS) + [scene.background])
        return f[edit.new] >= 0.5
    if edit.name == "add":
        return int(added_pixels(edit, scene, output).sum()) >= ADD_MIN_PIXELS
    outside_objects = shrink(edit.region, DILATE)
    f = fractions(output, outside_objects, list(world.COLOURS) + list(world.BACKGROUNDS))
    return f[edit.new] >= 0.5


def added_pixels(edit, scene, output):
    names = list(world.COLOURS) + [scene.background]
    k = names.index(edit.new)
    return (world.nearest_colour(output, names) == k) & (world.nearest_colour(scene.image, names) != k)


def kept_region(edit, scene, output):
    """Where the picture should not change."""
    if edit.name == "background":
        return shrink(scene.masks.any(0), ERODE)
    if edit.name == "add":
        return ~grow(added_pixels(edit, scene, output), DILATE)
    return ~grow(edit.region, DILATE)


def change(a, b, region):
    return float((a - b).abs().mean(0)[region].mean()) * 255


def psnr(a, b, region):
    mse = float(((a - b) ** 2).mean(0)[region].mean())
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()


def mask_scores(mask, truth):
    """(IoU, coverage of the truth) of a bool mask against the true region (both (H, W))."""
    mask = mask.bool()
    inter = float((mask & truth).sum())
    union = float((mask | truth).sum())
    return (inter / union if union else float("nan"), inter / max(1.0, float(truth.sum())))


def scores(edit, scene, output, round_trip, final_mask=None):
    kept = kept_region(edit, scene, output)
    row = {"success": success(edit, scene, output), "change": change(output, round_trip, kept),
           "change_vs_input": change(output, scene.image, kept), "psnr": psnr(output, scene.image, kept)}
    if final_mask is not None and edit.region.any():
        row["iou"], row["coverage"] = mask_scores(final_mask > 0.5, edit.region)
    return row
