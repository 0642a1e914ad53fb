"""DRAFT, not collected (bench/ is outside pytest's testpaths): move to tests/host/test_edit_quality.py
once the trained models pass it. On 2026-12-02 they did not: removal succeeded on 0/6 scenes on
SD3 and the UNet did not read its prompt; on 2026-12-03, with trained token tables and the simple
world, still 0/8 on SD3 seeds 0 and 1 and SD1.5 seed 0 (bench/quality/README.md). So THRESHOLDS
are placeholders, not a measured spread.

Edits that do what their words say (issue #17): on tiny models trained on the shapes world of
bench/quality (an SD1.5-layout UNet, eps, and an SD3 MMDiT, rectified flow; ComfyUI's own classes
with tiny frozen random text encoders and real tokenizers), "- <colour> <shape>" through the real
nodes (VAE Encode -> Inversion -> Edit Concept -> Guided Edit -> VAE Decode) removes the object on
most held-out scenes and changes the rest of the picture much less than the same edit with
mask_type none.

The models are trained on first use (one CPU thread, a few minutes each) and cached in
~/.cache/ledits_pp_quality (LEDITS_QUALITY_CACHE), keyed by the training config; later runs load
them. Thresholds: see THRESHOLDS (measured spread over training seeds, bench/quality/README.md).
"""
import pathlib
import statistics
import sys

import pytest
import torch

QUALITY = pathlib.Path(__file__).resolve().parents[2] / "bench" / "quality"
SCENES = 8
STEPS = 30                     # the Inversion node's default
# Per family: removal success (share of scenes) at least, and change outside the object with
# mask_type none divided by the default's (intersect) at least.
THRESHOLDS = {"sd15": {"success": 0.75, "ratio": 2.0}, "sd3": {"success": 0.75, "ratio": 2.0}}


@pytest.fixture(scope="module")
def quality(comfy_host):
    """The bench/quality modules, imported inside this host (ComfyUI already set up by conftest)."""
    if str(QUALITY) not in sys.path:
        sys.path.append(str(QUALITY))
    import edit_metrics
    import quality_pipeline
    import shapes_models
    import shapes_world
    return shapes_models, shapes_world, edit_metrics, quality_pipeline


def removals(quality, layout):
    shapes_models, shapes_world, metrics, pipeline = quality
    torch.set_num_threads(1)
    model, clip, vae, info = shapes_models.trained_model(layout, seed=0, log=print)
    rows = []
    for scene in shapes_world.held_out(SCENES):
        latent = pipeline.encode(vae, scene.image)
        round_trip = pipeline.decode(vae, latent)
        inversion = pipeline.invert(model, latent, steps=STEPS)[0]
        edit = metrics.edits(scene)[0]
        assert edit.name == "remove"
        row = {}
        for mask_type in ("intersect", "none"):
            out, masks, _ = pipeline.guided_edit(model, inversion, pipeline.concepts(clip, edit.items,
                                                                                    mask_type=mask_type))
            row[mask_type] = metrics.scores(edit, scene, pipeline.decode(vae, out), round_trip, masks[0])
        rows.append(row)
    return rows, info


@pytest.mark.parametrize("layout", ["sd15", "sd3"])
def test_removal_removes_the_object_and_keeps_the_rest(quality, layout):
    rows, info = removals(quality, layout)
    success = statistics.fmean(float(r["intersect"]["success"]) for r in rows)
    change = statistics.fmean(r["intersect"]["change"] for r in rows)
    change_none = statistics.fmean(r["none"]["change"] for r in rows)
    iou = statistics.fmean(r["intersect"]["iou"] for r in rows)
    print(f"{layout}: removal success {success:.2f}, change outside {change:.2f} vs none {change_none:.2f} "
          f"(÷ {change_none / change:.1f}), final-mask IoU {iou:.2f}; model trained in {info['train_s']:.0f} s"
          f"{' (cached)' if info['cached'] else ''}")
    limits = THRESHOLDS[layout]
    assert success >= limits["success"], f"{layout}: the object was removed on only {success:.0%} of scenes"
    assert change_none >= limits["ratio"] * change, (
        f"{layout}: outside the object the default edit changed {change:.2f}/255, mask_type none "
        f"{change_none:.2f}/255: less than {limits['ratio']}x better")
