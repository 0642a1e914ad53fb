"""The README's pictures of real edits: trained tiny models, held-out scenes, the real nodes.

    ~/ComfyUI/.venv/bin/python bench/quality/pictures.py --kept sd3_seed0 --out docs/quality_sd3.png
    ~/ComfyUI/.venv/bin/python bench/quality/pictures.py --kept sd15_small_seed0 --capture latent/2 --out docs/quality_sd15.png

One row per held-out scene: the input, the edit "- <colour> <shape>" at the nodes' defaults
(intersect), Guided Edit's MASK output over the input (where the concept edited), and the same
edit with mask_type none (global semantic guidance) for comparison. Nothing is drawn by hand:
every picture is VAE Decode of the node chain's LATENT.
"""
import argparse
import json

import quality_host  # noqa: F401
import torch
from PIL import Image, ImageDraw

import edit_metrics as E
import kept_models
import quality_pipeline as P
import shapes_models
import shapes_world as world

COLUMNS = ("input", "edit (defaults)", "its MASK output", "mask_type none")
CELL, LABEL = 128, 14


def to_image(t):
    return Image.fromarray((t.clamp(0, 1).movedim(0, -1) * 255).round().byte().numpy())


def overlay(image, mask):
    tint = image.clone()
    tint[0] = torch.where(mask, 0.5 * tint[0] + 0.5, tint[0] * 0.6)
    tint[1:] = torch.where(mask, tint[1:] * 0.5, tint[1:] * 0.6)
    return tint


def render(model, clip, vae, info, scenes, out):
    variant = info["config"].get("world", "full")
    rows = []
    for scene in world.held_out(scenes, variant=variant):
        latent = P.encode(vae, scene.image)
        inversion = P.invert(model, latent)[0]
        edit = E.edits(scene)[0]
        edited, masks, _ = P.guided_edit(model, inversion, P.concepts(clip, edit.items))
        globally, _, _ = P.guided_edit(model, inversion, P.concepts(clip, edit.items, mask_type="none"))
        picture = P.decode(vae, edited)
        rows.append((f"- {edit.items[0][0]}", [scene.image, picture, overlay(scene.image, masks[0] > 0.5),
                                               P.decode(vae, globally)], E.success(edit, scene, picture)))
    sheet = Image.new("RGB", (CELL * len(COLUMNS), (CELL + LABEL) * len(rows) + LABEL), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(COLUMNS):
        draw.text((c * CELL + 4, 1), name, fill="black")
    for r, (label, pictures, removed) in enumerate(rows):
        top = LABEL + r * (CELL + LABEL)
        draw.text((4, top + 1), f"{label}: {'removed' if removed else 'not removed'}", fill="black")
        for c, picture in enumerate(pictures):
            sheet.paste(to_image(picture), (c * CELL, top + LABEL))
    sheet.save(out)
    print(f"{out}: {len(rows)} scenes, trained {info['train_s']:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kept", default="", help="a model of bench/quality/models/ (else --layout/--seed/--config)")
    ap.add_argument("--capture", default="", help="LEDITS++ Attention Capture resolution, e.g. latent/2")
    ap.add_argument("--layout", default="sd3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}", help="JSON overrides of shapes_models.DEFAULTS")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    P.node_classes()
    if args.kept:
        model, clip, vae, info = kept_models.load(args.kept)
    else:
        model, clip, vae, info = shapes_models.trained_model(args.layout, args.seed, **json.loads(args.config))
    if args.capture:
        model = P.attention_capture(model, args.capture)
    render(model, clip, vae, info, args.scenes, args.out)


if __name__ == "__main__":
    main()
