"""The templates on a trained tiny model (issue #17), for test_browser_templates.py: which model each
template gets, the held-out scene it edits, how its concepts are set, and what its outputs must show.

The models are bench/quality's kept ones (the fixture node "LeditsTestTrainedModel" loads them).
Each edits a held-out scene of the shapes world that it removes at the templates' own settings
(Inversion defaults, seed 0, the encoded empty prompt as negative) on ComfyUI 0.33.0 and 0.3.64
alike. Measured with bench/quality/measure.py --empty-negative on 16 held-out scenes: SD3 and Flux
dev remove 11 / 16, among them 1000004 ("red square" beside a blue square; Guided Edit's MASK
IoU 0.70 / 0.59). The small UNet removes 12 / 16 with its attention captured at latent/2, but
only 1 / 16 at the default latent/4 (a 128 px picture's latent/4 level is 4x4 cells), which the
SD1.5 edit templates use (they have no Attention Capture node): 1000007 ("blue square", MASK IoU
0.53) is that one. Outputs are scored with bench/quality/edit_metrics, as the bench scores them.
"""
import io
import pathlib
import sys

QUALITY = pathlib.Path(__file__).resolve().parents[2] / "bench" / "quality"
if str(QUALITY) not in sys.path:
    sys.path.append(str(QUALITY))

import edit_metrics  # noqa: E402
import shapes_world  # noqa: E402

UNET_SCENE, DIT_SCENE = 1_000_007, 1_000_004
# template -> (kept model, held-out scene seed, Attention Capture resolution to set or None, lowest
# IoU of its mask outputs with the removed object; what each run measured: test_browser_templates)
TRAINED = {
    "ledits_edit_sd15": ("sd15_small_seed0", UNET_SCENE, None, 0.3),
    "ledits_custom_sampler": ("sd15_small_seed0", UNET_SCENE, None, None),
    "ledits_attention_masks": ("sd15_small_seed0", UNET_SCENE, "latent/2", 0.2),
    "ledits_reconstruct": ("sd15_small_seed0", UNET_SCENE, None, None),
    "ledits_edit_sd35": ("sd3_seed0", DIT_SCENE, None, 0.3),
    "ledits_edit_flux": ("flux_dev_seed0", DIT_SCENE, None, 0.3),
}

# Every concept's text becomes the scene's first object ("red square"); its reverse stays: the edit
# templates' "- cat" removes it, the attention template's "Word to mask" (add) marks where it is (to
# remove it there would move the last step's attention off the object). An adding concept beside a
# removing one ("+ glasses") is taken out, its chain input (if any) passed on: the model never
# learned its word, so it would only add noise inside its mask. The UNet's attention is captured at
# latent/2 where the template has an Attention Capture: 128 px pictures give a 4x4 latent/4 level.
SET_CONCEPTS = """([phrase, capture]) => {
    const g = app.graph;
    const linkOf = (id) => (g.links.get ? g.links.get(id) : g.links[id]);
    const widget = (n, name) => n.widgets.find(w => w.name === name);
    const concepts = g.nodes.filter(n => n.type === "LEditsPPEditConcept");
    for (const n of concepts) {
        if (concepts.length > 1 && !widget(n, "reverse").value) {
            const input = (n.inputs || []).find(i => i.name === "concepts" && i.link != null);
            const from = input && linkOf(input.link);
            for (const id of from ? [...(n.outputs[0].links || [])] : []) {
                const to = linkOf(id);
                g.getNodeById(from.origin_id).connect(from.origin_slot, g.getNodeById(to.target_id), to.target_slot);
            }
            g.remove(n);
            continue;
        }
        widget(n, "text").value = phrase;
    }
    for (const n of g.nodes) {
        if (capture && n.type === "LEditsPPAttentionCapture") widget(n, "resolution").value = capture;
    }
    app.canvas.setDirty(true, true);
}"""


def scene(stem):
    return shapes_world.scene(TRAINED[stem][1], variant="simple")


def write_scene(path, stem):
    """The template's scene as the PNG that Load Image reads."""
    from PIL import Image
    pixels = (scene(stem).image.movedim(0, -1).clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(pixels).save(path)


def phrase(stem):
    """What the template's concepts remove: the scene's first object ("red square")."""
    return shapes_world.object_phrase(*scene(stem).objects[0])


def _pixels(server, item):
    """(3, H, W) float of an image the server returns through /view, at the scene's size."""
    import numpy
    import torch
    from PIL import Image
    picture = Image.open(io.BytesIO(server.view(item))).convert("RGB")
    if picture.size != (shapes_world.SIZE, shapes_world.SIZE):
        picture = picture.resize((shapes_world.SIZE, shapes_world.SIZE), Image.NEAREST)
    return torch.from_numpy(numpy.asarray(picture).copy()).movedim(-1, 0).float() / 255


def outputs_by_source(entry):
    """[(kind, title, [images])] of the run's image outputs, kind from the node that feeds them:
    "picture" (VAE Decode), "mask" (Convert Mask to Image), "difference" (Image Blend), else "other"."""
    prompt = entry["prompt"][2]
    kinds = {"VAEDecode": "picture", "MaskToImage": "mask", "ImageBlend": "difference"}
    found = []
    for node_id, out in entry["outputs"].items():
        source = prompt[node_id]["inputs"].get("images")
        kind = kinds.get(prompt[str(source[0])]["class_type"], "other") if isinstance(source, list) else "other"
        found.append((kind, prompt[node_id].get("_meta", {}).get("title", node_id), out.get("images", [])))
    return found


def check_real_edit(server, entry, stem):
    """Scores of the run's outputs against the scene's truth; asserts the edit is real. Returns
    {output title: score in words} for the test's report line."""
    the_scene = scene(stem)
    removal = edit_metrics.edits(the_scene)[0]            # "- <first object>", the object's true mask
    floor = TRAINED[stem][3]
    edits = any(n["class_type"] == "LEditsPPEditConcept" for n in entry["prompt"][2].values())
    scores = {}
    for kind, title, images in outputs_by_source(entry):
        for k, item in enumerate(images):
            label = f"{title}[{k}]" if len(images) > 1 else title
            pixels = _pixels(server, item)
            if kind == "picture" and edits:
                removed = edit_metrics.success(removal, the_scene, pixels)
                scores[label] = f"{phrase(stem)} {'removed' if removed else 'NOT removed'}"
                assert removed, f"{stem}: {label} still shows the {phrase(stem)} (scene {the_scene.seed})"
            elif kind == "picture":
                kept = edit_metrics.shrink(removal.region, edit_metrics.ERODE)
                share = edit_metrics.fractions(pixels, kept, [the_scene.objects[0][0], the_scene.background])
                scores[label] = f"{share[the_scene.objects[0][0]]:.0%} of the {phrase(stem)} kept"
                assert share[the_scene.objects[0][0]] > 0.5, f"{stem}: the replay {label} lost the {phrase(stem)}: {share}"
            elif kind == "mask" and floor is not None:
                iou = edit_metrics.mask_scores(pixels[0] > 0.5, removal.region)[0]
                scores[label] = f"IoU {iou:.2f} with the {phrase(stem)}"
                assert iou >= floor, f"{stem}: mask {label} meets the {phrase(stem)} with IoU {iou:.2f} < {floor}"
            elif kind == "difference":
                change = float(pixels.mean()) * 255
                scores[label] = f"mean {change:.2f}/255"
                assert change < 1.0, f"{stem}: {label} is not black: mean {change:.2f}/255"
    return scores


def mask_share_per_step(payload):
    """The first concept's mask share (0-1) of each step in Guided Edit's scrubber payload: at 128 px
    the masks are 4x4 cells and cover 0-2 of them per step, so the test scrubs to the largest."""
    import base64
    import numpy
    data = numpy.frombuffer(base64.b64decode(payload["data"]), numpy.uint8)
    data = data.reshape(len(payload["steps"]), len(payload["labels"]), payload["batch"], len(payload["frames"]), 2, -1)
    return [float(step[0, 0, 0, 0].mean()) / 255 for step in data]
