"""Edit quality per family on the trained tiny models of the shapes world, through the real nodes.

    ~/ComfyUI/.venv/bin/python bench/quality/measure.py [--layouts sd15,sd3] [--scenes 16] [--seeds 0]

Per held-out scene: VAE Encode -> LEDITS++ Inversion (defaults: 30 steps, skip 0.15) -> Edit
Concept(s) (defaults: scale 5, threshold 0.9, intersect) -> Guided Edit -> VAE Decode, for the edits
of edit_metrics.py; baselines: mask_type none / attention / noise, the target caption alone
through Guided Edit (prompt only, cfg 7.5) and ComfyUI img2img (euler, same sigmas, cfg 7.5).
Removal also scores the masks Guided Edit could hand on (issue #17): the last active step's (its
output before 0.4), cells masked in a share of the active steps (>= 0.1: its output since 0.4),
the union over active steps, the first step(s), the first step's attention-only mask. Prints markdown tables; --json writes every row.
"""
import argparse
import json
import statistics
import sys
import time

import quality_host  # noqa: F401
import torch
import torch.nn.functional as F

import edit_metrics as E
import kept_models
import quality_pipeline as P
import shapes_models
import shapes_world as world

REMOVAL_METHODS = ("intersect", "none", "attention", "noise", "prompt only", "img2img")
OTHER_METHODS = ("intersect", "none")
CFG = 7.5


def log(text):
    print(text, file=sys.stderr, flush=True)


def zero_conditioning(clip):
    """The pack's unconditional input when `negative` is unconnected: zeros (and zero extras:
    pooled vector, HiDream's Llama states)."""
    cond = P.text(clip, "")
    extra = {k: torch.zeros_like(cond[0][1][k]) for k in ("pooled_output", "conditioning_llama3")
             if isinstance(cond[0][1].get(k), torch.Tensor)}
    return [[torch.zeros_like(cond[0][0]), extra]]


def to_pixels(mask, size=world.SIZE):
    return F.interpolate(mask.float().reshape(1, 1, *mask.shape[-2:]), size=(size, size), mode="nearest")[0, 0] > 0.5


def mask_alternatives(record, concept=0):
    """Binary latent masks Guided Edit could output for one concept, from the per-step record."""
    steps = [s[concept] for s in record.steps if s is not None and s[concept][1] is not None]
    if not steps:
        return {}
    masks = torch.stack([m[0] for _, m in steps]).float()           # (active steps, h, w), image 0
    third = max(1, -(-len(steps) // 3))
    masks_core = P.pack_module("ledits_core.masks")
    first_map = steps[0][0]
    alternatives = {
        "last active step (the MASK output before 0.4)": masks[-1] > 0.5,
        "union over active steps": masks.max(0).values > 0.5,
        "mean over active steps >= 0.5": masks.mean(0) >= 0.5,
        "first active step": masks[0] > 0.5,
        "union of the first third": masks[:third].max(0).values > 0.5,
        "mean of the first third >= 0.5": masks[:third].mean(0) >= 0.5,
        "union of the middle third": masks[third:2 * third].max(0).values > 0.5,
    }
    for share in (0.1, 0.2, 0.3):
        label = " (the MASK output since 0.4)" if share == 0.1 else ""
        alternatives[f"mean over active steps >= {share}{label}"] = masks.mean(0) >= share - 1e-3
    if first_map is not None:
        m1 = masks_core.attention_mask(first_map, record.thresholds[concept], record.latent_size)
        alternatives["attention-only mask, first step"] = m1[0, 0] > 0.5
    return alternatives


def run_method(method, model, clip, vae, inversion, latent, sigmas, edit, negative, concept=None):
    """(picture, final mask of concept 0 in pixels or None, attention record or None)."""
    if method == "prompt only":
        out, _, _ = P.guided_edit(model, inversion, positive=P.text(clip, edit.target_caption), cfg=CFG)
        return P.decode(vae, out), None, None
    if method == "img2img":
        schedule = sigmas if float(sigmas[-1]) == 0 else torch.cat([sigmas, torch.zeros(1)])
        out = P.img2img(model, latent, schedule, P.text(clip, edit.target_caption), negative, CFG)
        return P.decode(vae, out), None, None
    chain = P.concepts(clip, edit.items, **dict(concept or {}, mask_type=method))
    out, masks, record = P.guided_edit(model, inversion, chain)
    return P.decode(vae, out), masks[0] > 0.5, record


def measure_scene(layout, model, clip, vae, scene, steps, edit_names=None, removal_methods=REMOVAL_METHODS,
                  skip=0.15, concept=None, empty_negative=False):
    rows, mask_rows = [], []
    latent = P.encode(vae, scene.image)
    round_trip = P.decode(vae, latent)
    inversion, _, sigmas = P.invert(model, latent, steps=steps, skip=skip,
                                    negative=P.text(clip, "") if empty_negative else None)
    negative = zero_conditioning(clip)
    floor = {"change_vs_input": E.change(round_trip, scene.image, torch.ones_like(scene.masks[0])),
             "psnr": E.psnr(round_trip, scene.image, torch.ones_like(scene.masks[0]))}
    for edit in E.edits(scene):
        if edit_names and edit.name not in edit_names:
            continue
        for method in (removal_methods if edit.name == "remove" else OTHER_METHODS):
            picture, final, record = run_method(method, model, clip, vae, inversion, latent, sigmas, edit, negative,
                                                concept)
            row = E.scores(edit, scene, picture, round_trip, final)
            rows.append(dict(row, layout=layout, scene=scene.seed, edit=edit.name, method=method))
            if edit.name == "remove" and method == "intersect":
                for name, mask in mask_alternatives(record).items():
                    iou, coverage = E.mask_scores(to_pixels(mask), edit.region)
                    mask_rows.append({"layout": layout, "scene": scene.seed, "mask": name, "iou": iou,
                                      "coverage": coverage, "area": float(mask.float().mean())})
    return rows, mask_rows, floor


def mean(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.fmean(values) if values else float("nan")


def table(rows, floor_rows):
    out = ["| family | edit | method | n | success | change outside (vs round trip) | change outside (vs input) | "
           "PSNR outside (vs input) | MASK output IoU | coverage | none ÷ this (change) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["layout"], r["edit"], r["method"]), []).append(r)
    for (layout, edit, method), rs in groups.items():
        none = groups.get((layout, edit, "none"), [])
        ratio = mean([r["change"] for r in none]) / max(1e-9, mean([r["change"] for r in rs]))
        out.append(f"| {layout} | {edit} | {method} | {len(rs)} | {100 * mean([r['success'] for r in rs]):.0f} % | "
                   f"{mean([r['change'] for r in rs]):.2f} | {mean([r['change_vs_input'] for r in rs]):.2f} | "
                   f"{mean([r['psnr'] for r in rs]):.1f} dB | {mean([r.get('iou') for r in rs]):.2f} | "
                   f"{mean([r.get('coverage') for r in rs]):.2f} | {ratio:.1f}× |")
    for layout, fs in floor_rows.items():
        out.append(f"| {layout} | (VAE round trip = no-concept replay) | — | {len(fs)} | — | 0 | "
                   f"{mean([f['change_vs_input'] for f in fs]):.2f} | {mean([f['psnr'] for f in fs]):.1f} dB | | | |")
    return "\n".join(out)


def mask_table(mask_rows):
    out = ["| family | mask handed on (removal, intersect) | IoU with the removed object | coverage | area (share of the picture) |",
           "|---|---|---|---|---|"]
    groups = {}
    for r in mask_rows:
        groups.setdefault((r["layout"], r["mask"]), []).append(r)
    for (layout, name), rs in groups.items():
        out.append(f"| {layout} | {name} | {mean([r['iou'] for r in rs]):.2f} ± "
                   f"{statistics.pstdev([r['iou'] for r in rs]):.2f} | {mean([r['coverage'] for r in rs]):.2f} | "
                   f"{mean([r['area'] for r in rs]):.3f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layouts", default="sd15,sd3")
    ap.add_argument("--seeds", default="0", help="training seeds of the models")
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30, help="Inversion steps (the node's default: 30)")
    ap.add_argument("--edits", default="remove,change,add,background")
    ap.add_argument("--methods", default=",".join(REMOVAL_METHODS), help="removal methods to run")
    ap.add_argument("--config", default="{}", help="JSON overrides of shapes_models.DEFAULTS")
    ap.add_argument("--skip", type=float, default=0.15, help="Inversion skip (the node's default: 0.15)")
    ap.add_argument("--concept", default="{}", help='JSON overrides of Edit Concept, e.g. {"threshold": 0.8}')
    ap.add_argument("--empty-negative", action="store_true",
                    help="connect the encoded empty prompt as the Inversion's negative (default: unconnected = zeros)")
    ap.add_argument("--kept", default="", help="models of bench/quality/models/ to measure instead (comma-separated)")
    ap.add_argument("--capture", default="", help="LEDITS++ Attention Capture resolution for UNets, e.g. latent/2 "
                    "(the tiny world's 16-cell latent gives 4x4 maps at the default latent/4)")
    ap.add_argument("--blocks", default="", help="LEDITS++ Attention Capture blocks for DiTs, e.g. 0 (default: the "
                    "family's auto blocks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    P.node_classes()
    rows, mask_rows, floors = [], [], {}
    runs = ([(name, lambda name=name: kept_models.load(name, log=log)) for name in args.kept.split(",")] if args.kept
            else [(f"{layout} s{seed}", lambda layout=layout, seed=seed: shapes_models.trained_model(
                layout, seed, log=log, **json.loads(args.config)))
                  for layout in args.layouts.split(",") for seed in (int(s) for s in args.seeds.split(","))])
    for label, load in runs:
        model, clip, vae, info = load()
        if args.capture or args.blocks:
            model = P.attention_capture(model, args.capture or "latent/4", args.blocks or "auto")
        t0 = time.perf_counter()
        variant = info["config"].get("world", "full")
        with P.per_step_masks():
            for scene in world.held_out(args.scenes, variant=variant):
                r, m, floor = measure_scene(label, model, clip, vae, scene, args.steps, args.edits.split(","),
                                            args.methods.split(","), args.skip, json.loads(args.concept),
                                            args.empty_negative)
                rows += r
                mask_rows += m
                floors.setdefault(label, []).append(floor)
        log(f"{label}: {args.scenes} scenes in {time.perf_counter() - t0:.0f} s")
    print(table(rows, floors))
    print()
    print(mask_table(mask_rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "masks": mask_rows, "floors": floors}, f)


if __name__ == "__main__":
    main()
