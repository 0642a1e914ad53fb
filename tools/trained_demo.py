"""The install check on a trained tiny model, so that it shows a real edit instead of noise.

A git clone carries bench/quality/models/: tiny models trained on a synthetic world of flat
coloured shapes (bench/quality/README.md). The check removes the first object of one held-out scene
with the kept SD3 MMDiT through the tool's own workflow (the SDXL graph: `negative` unconnected, the
zero conditioning the bench measures with), then says from the pixels whether the object is gone,
with the quality bench's own rule (edit_metrics.success). A pack installed from the Registry has no
bench/, so the check falls back to the random-weight model (noise).

Through this workflow the SD3 model removes the first object of 11 of the first 16 held-out scenes
(it misses the yellow ones, as in tests/host/test_edit_quality.py), the same on ComfyUI 0.3.64 and
0.33.0. SCENE is scene 0: afterwards its region is 100 % grey wall on both.
LEDITS_KEPT_MODELS names another folder of kept models (an empty one forces the random model).
"""
import importlib
import os
import pathlib
import shutil
import sys

PACK = pathlib.Path(__file__).resolve().parents[1]
QUALITY = PACK / "bench" / "quality"
MODEL = "sd3_seed0"
LABEL = f"trained tiny SD3, bench/quality/models/{MODEL}"
SCENE = 1_000_000 + 0          # held-out scene 0 of the "simple" world: a red square on a grey wall
CHECKPOINT = f"ledits_trained_{MODEL}.safetensors"


def kept_folder():
    return pathlib.Path(os.environ.get("LEDITS_KEPT_MODELS") or QUALITY / "models")


def available():
    """True in a git clone (the kept model and the bench that loads it are there)."""
    return (kept_folder() / f"{MODEL}.safetensors").is_file() and (QUALITY / "kept_models.py").is_file()


def quality_module(name):
    """A module of bench/quality (they import each other by plain name); appended to sys.path so
    that none of them shadows ComfyUI's modules."""
    if str(QUALITY) not in sys.path:
        sys.path.append(str(QUALITY))
    return importlib.import_module(name)


def scene():
    return quality_module("shapes_world").scene(SCENE, variant="simple")


def picture(shown):
    """The scene as the PIL image the workflow loads."""
    from PIL import Image
    pixels = (shown.image.movedim(0, -1) * 255).round().byte().numpy()
    return Image.fromarray(pixels, "RGB")


def removal(shown):
    """The concept the check removes: the scene's first object ("red square")."""
    return quality_module("shapes_world").object_phrase(*shown.objects[0])


def note(concept):
    return (f"NOTE: no --ckpt given: checking the install with a tiny SD3 trained on pictures of coloured shapes "
            f"(bench/quality/models/{MODEL}; its VAE paints 8x8-pixel blocks): it removes the {concept} from a "
            "scene it never saw.")


def checkpoint(work):
    """The kept model as a full checkpoint CheckpointLoaderSimple loads (assembled once into the
    quality cache by kept_models.load), linked into work/checkpoints under CHECKPOINT."""
    import comfy.cli_args
    flags = dict(vars(comfy.cli_args.args))
    kept = quality_module("kept_models")           # its quality_host sets CPU flags: keep the tool's
    vars(comfy.cli_args.args).update(flags)
    kept.KEPT = kept_folder()
    full = kept.checkpoint_file(MODEL)
    if not full.is_file():
        kept.load(MODEL, log=lambda text: print(text, file=sys.stderr))
        if not full.is_file():
            raise RuntimeError(f"kept_models.load did not leave {full.name} in {full.parent}")
    link = work / "checkpoints" / CHECKPOINT
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(full)
    except OSError:                                # no symlinks (Windows without the right)
        shutil.copyfile(full, link)
    return link


def verdict(shown, edited_png):
    """One line: was the object removed? Scored on the edited pixels with the scene's true mask."""
    import numpy
    import torch
    from PIL import Image
    E, world = quality_module("edit_metrics"), quality_module("shapes_world")
    with Image.open(edited_png) as img:
        output = torch.from_numpy(numpy.asarray(img.convert("RGB"), dtype=numpy.float32) / 255).movedim(-1, 0)
    edit = next(e for e in E.edits(shown) if e.name == "remove")
    colour = shown.objects[0][0]
    shares = E.fractions(output, E.shrink(edit.region, E.ERODE), list(world.COLOURS) + [shown.background])
    outside = E.change(output, shown.image, E.kept_region(edit, shown, output))
    return (f"removed the {removal(shown)}: {'yes' if E.success(edit, shown, output) else 'NO'} "
            f"(its region is now {shares[shown.background]:.0%} {shown.background}, {shares[colour]:.0%} {colour}); "
            f"outside it the picture changed {outside:.1f}/255")
