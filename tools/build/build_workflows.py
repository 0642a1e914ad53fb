"""Writes the example workflows in workflows/ (UI format, what the ComfyUI front end saves and
loads) and their thumbnails. Maintainer tool: run it after changing a node's inputs, then run the
host tier (tests/host/test_workflows.py checks every file against a live server's /object_info).

    python tools/build/build_workflows.py            # rewrite workflows/*.json and *.jpg

No index.json: ComfyUI's /workflow_templates lists every *.json in the folder as a template (an
index.json would show up as a broken template named "index"), and the front end names custom-node
templates by their file name.

The graph model (UI format 0.4) is workflow_graph.py beside it. Needs only Python and Pillow (for the
thumbnails); never imports ComfyUI or the pack.
"""
import json
import pathlib
import sys
from dataclasses import dataclass

from workflow_families import FAMILIES, SD15_CKPT, WAN21_T2V, WAN_NOTE, SplitFiles   # this folder is sys.path[0]
from workflow_graph import COLORS, Workflow
from workflow_thumbnail import thumbnail

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "workflows"
# ----------------------------------------------------------------------------------------------
# Shared pieces. Widget values are positional, in the node's input order (see /object_info).
# LEditsPPInversion: steps, skip, seed, <control_after_generate>, schedule, source_cfg, batch_steps,
#                    flux_guidance
# LEditsPPEditConcept: text, scale, threshold, reverse, warmup, cooldown, mask_type
# LEditsPPAttentionCapture: resolution, include_middle, blocks
# LEditsPPGuidedEdit / LEditsPPGuider: cfg, guidance_rescale

IMAGE = "example.png"

INVERSION = [30, 0.15, 0, "fixed", "exact", 3.5, 1, -1.0]
CONCEPT_ADD = ["glasses", 7.0, 0.9, False, 0, 10000, "intersect"]
CONCEPT_REMOVE = ["cat", 5.0, 0.9, True, 0, 10000, "intersect"]
EDIT = [7.5, 0.0]
# Guided Edit / Mask From Attention grow after a run (step scrubber, mask previews): their columns
# stay free below them, and their declared size is the grown one, so nothing is drawn over.
GROWN_EDIT = [360, 860]
GROWN_MASK = [360, 720]


@dataclass(frozen=True)
class Sources:
    """Where the graph takes its MODEL, CLIP and VAE from: (node id, output slot)."""
    model: tuple = (1, 0)
    clip: tuple = (1, 1)
    vae: tuple = (1, 2)


CHECKPOINT = Sources()


def loader_block(wf, ckpt, negative=True, extras=None):
    """1 checkpoint (or 1 Load Diffusion Model, 22 CLIP loader, 23 Load VAE, 24 sampling shift for
    a SplitFiles), 2 image, 3 VAE Encode, 4 empty prompt (unconditional), then `extras(wf)` (ids of
    more nodes for the group). Returns the Sources."""
    if isinstance(ckpt, SplitFiles):
        sources, members = split_loaders(wf, ckpt)
        image_y, title = 900, "1. Load the model and an image"
    else:
        wf.node(1, "CheckpointLoaderSimple", (40, 440), [ckpt])
        sources, members, image_y, title = CHECKPOINT, [1], 620, "1. Load checkpoint and image"
    wf.node(2, "LoadImage", (40, image_y), [IMAGE, "image"])
    wf.node(3, "VAEEncode", (400, 700))
    wf.link(2, 0, 3, "pixels")
    wf.link(*sources.vae, 3, "vae")
    members += [2, 3]
    if negative:
        wf.node(4, "CLIPTextEncode", (400, 440), [""], title="Unconditional (empty prompt)", size=[320, 180])
        wf.link(*sources.clip, 4, "clip")
        members.append(4)
    if extras:
        members += extras(wf)
    wf.group(title, members, COLORS["load"])
    return sources


def split_loaders(wf, files):
    wf.node(1, "UNETLoader", (40, 440), [files.unet, "default"], size=[320, 82])
    if len(files.clips) == 1:
        wf.node(22, "CLIPLoader", (40, 560), [files.clips[0], files.clip_type, "default"], size=[320, 130])
    else:
        wf.node(22, "QuadrupleCLIPLoader", (40, 560), list(files.clips), size=[320, 150])
    wf.node(23, "VAELoader", (40, 750), [files.vae], size=[320, 82])
    members = [1, 22, 23]
    model = (1, 0)
    if files.sampling is not None:
        kind, shift = files.sampling
        wf.node(24, kind, (400, 860), [shift], size=[320, 82])
        wf.link(1, 0, 24, "model")
        model = (24, 0)
        members.append(24)
    return Sources(model=model, clip=(22, 0), vae=(23, 0)), members


def inversion_block(wf, model_src=(1, 0), negative=True, widgets=INVERSION, negative_src=(4, 0)):
    wf.node(5, "LEditsPPInversion", (790, 440), widgets, size=[340, 300])
    wf.link(*model_src, 5, "model")
    wf.link(3, 0, 5, "latent")
    if negative:
        wf.link(*negative_src, 5, "negative")
    wf.group("2. Invert once", [5], COLORS["invert"])


def family_extras(wf, fam):
    """The nodes a family puts between the empty prompt / scheduler and the Inversion, in the free
    column below the sampling shift (25 FluxGuidance or ConditioningZeroOut, 26 scheduler); they
    join the load group. Returns their ids."""
    ids, y = [], 1000 if 24 in wf.nodes else 860
    if fam.guidance is not None:
        wf.node(25, "FluxGuidance", (400, y), [fam.guidance], size=[320, 82])
    elif fam.zero_negative:
        wf.node(25, "ConditioningZeroOut", (400, y), title="Zeroed empty prompt (Turbo negative)", size=[320, 70])
    if fam.guidance is not None or fam.zero_negative:
        wf.link(4, 0, 25, "conditioning")
        ids.append(25)
    if fam.scheduler is not None:
        kind, rest = fam.scheduler
        wf.node(26, kind, (400, y + 140), [fam.steps, *rest], title=f"{kind} (the Inversion's schedule)",
                size=[320, 150])
        ids.append(26)
    return ids


def concept_block(wf, concepts, y=860, clip_src=(1, 1)):
    previous = None
    ids = []
    for k, values in enumerate(concepts):
        node_id = 6 + k
        title = ("LEDITS++ Edit Concept (remove)" if values[3] else "LEDITS++ Edit Concept (add)")
        wf.node(node_id, "LEditsPPEditConcept", (790, y + 300 * k), values, title=title, size=[340, 250])
        wf.link(*clip_src, node_id, "clip")
        if previous:
            wf.link(previous, 0, node_id, "concepts")
        previous = node_id
        ids.append(node_id)
    wf.group("3. Edit concepts (chain as many as you like)", ids, COLORS["concepts"])
    return previous


def note(wf, text, pos=(40, 20), size=(700, 330)):
    wf.node(99, "Note", pos, [text.strip()], title="How to use this workflow", size=list(size))


COMMON_TIPS = """
Tips: 20-50 steps; skip 0.1-0.2 (higher keeps more of the photo). Edit scale 5-10 for objects, up
to 15 for large changes; threshold 0.9 edits about 10 % of the image (objects), 0.5 or lower for
style. Change only the concepts and re-queue: the inversion is cached and not re-run.
Resize big photos first (sides multiple of 8).
"""


def files_text(label, ckpt):
    if isinstance(ckpt, SplitFiles):
        return f"Pick your {label} files ({ckpt.unet} with {' + '.join(ckpt.clips)} and {ckpt.vae})"
    return f"Pick your {label} checkpoint ({ckpt})"


def edit_workflow(name, family):
    fam = FAMILIES[family]
    label, ckpt, negative = fam.label, fam.ckpt, fam.negative
    wf = Workflow(name, f"LEDITS++ edit ({label})",
                  f"Invert a photo once, then add one concept and remove another with LEDITS++ "
                  f"semantic guidance on {label}; previews the per-concept masks.")
    sources = loader_block(wf, ckpt, negative=negative, extras=lambda graph: family_extras(graph, fam))
    inversion = [fam.steps, *INVERSION[1:5], fam.cfg[0], *INVERSION[6:]]
    inversion_block(wf, sources.model, negative=negative, widgets=inversion,
                    negative_src=(25, 0) if 25 in wf.nodes else (4, 0))
    if fam.scheduler is not None:
        wf.link(26, 0, 5, "sigmas")
    last = concept_block(wf, [CONCEPT_ADD, CONCEPT_REMOVE], clip_src=sources.clip)
    wf.node(8, "LEditsPPGuidedEdit", (1200, 440), [fam.cfg[1], *EDIT[1:]], size=GROWN_EDIT)
    wf.link(*sources.model, 8, "model")
    wf.link(5, 0, 8, "inversion")
    wf.link(last, 0, 8, "concepts")
    wf.node(9, "VAEDecode", (1620, 440))
    wf.link(8, 0, 9, "samples")
    wf.link(*sources.vae, 9, "vae")
    wf.node(10, "SaveImage", (1620, 580), ["ledits_edit"], size=[400, 420])
    wf.link(9, 0, 10, "images")
    wf.node(11, "MaskToImage", (1620, 1070))
    wf.link(8, 1, 11, "mask")
    wf.node(12, "PreviewImage", (1620, 1190), title="Concept masks (one per concept)", size=[400, 360])
    wf.link(11, 0, 12, "images")
    wf.group("4. Edit, decode, save", [8, 9, 10, 11, 12], COLORS["edit"])
    note(wf, f"""
LEDITS++ edit ({label}): change a real photo by adding and removing concepts.

1. {files_text(label, ckpt)} and load a photo (about {fam.size}).
2. LEDITS++ Inversion inverts the photo exactly once ({fam.steps} steps, skip 0.15).
3. Each Edit Concept is one instruction: "glasses" is added, "cat" is removed (reverse = remove).
   Chain more concepts through their `concepts` input.
4. Guided Edit replays the inversion with the concepts applied inside their own masks; the edited
   image is saved, and the mask of each concept is previewed (white = edited).
{fam.note}
{COMMON_TIPS}""", size=(700, 330) if not isinstance(ckpt, SplitFiles) else (1100, 330))
    return wf


VIDEO = "example.mp4"


def video_edit_workflow():
    """WAN text-to-video: a clip's frames through the WAN VAE, inverted and edited like a photo;
    saved as a clip, with the per-frame concept masks previewed."""
    files = WAN21_T2V
    wf = Workflow("ledits_edit_wan", "LEDITS++ video edit (WAN 2.1)",
                  "Invert a clip once, then add one concept and remove another in every frame with LEDITS++ on "
                  "WAN 2.1 text-to-video; saves the edited clip and previews the per-frame concept masks.")
    sources, members = split_loaders(wf, files)
    wf.node(2, "LoadVideo", (40, 900), [VIDEO, "image"])
    wf.node(25, "GetVideoComponents", (400, 1000), size=[320, 112])
    wf.link(2, 0, 25, "video")
    wf.node(3, "VAEEncode", (400, 700))
    wf.link(25, 0, 3, "pixels")
    wf.link(*sources.vae, 3, "vae")
    wf.node(4, "CLIPTextEncode", (400, 440), [""], title="Unconditional (empty prompt)", size=[320, 180])
    wf.link(*sources.clip, 4, "clip")
    wf.group("1. Load the model and a clip", members + [2, 25, 3, 4], COLORS["load"])
    inversion_block(wf, sources.model, widgets=[30, *INVERSION[1:5], 6.0, *INVERSION[6:]])
    last = concept_block(wf, [CONCEPT_ADD, CONCEPT_REMOVE], clip_src=sources.clip)
    wf.node(8, "LEditsPPGuidedEdit", (1200, 440), [6.0, *EDIT[1:]], size=GROWN_EDIT)
    wf.link(*sources.model, 8, "model")
    wf.link(5, 0, 8, "inversion")
    wf.link(last, 0, 8, "concepts")
    wf.node(9, "VAEDecode", (1620, 440))
    wf.link(8, 0, 9, "samples")
    wf.link(*sources.vae, 9, "vae")
    wf.node(26, "CreateVideo", (1620, 580), [16], size=[320, 100])
    wf.link(9, 0, 26, "images")
    wf.node(27, "SaveVideo", (1620, 740), ["video/ledits_edit_wan", "auto", "auto"], size=[400, 460])
    wf.link(26, 0, 27, "video")
    wf.node(11, "MaskToImage", (1620, 1270))
    wf.link(8, 1, 11, "mask")
    wf.node(12, "PreviewImage", (1620, 1390), title="Concept masks (per latent frame and concept)",
            size=[400, 360])
    wf.link(11, 0, 12, "images")
    wf.group("4. Edit, decode, save the clip", [8, 9, 26, 27, 11, 12], COLORS["edit"])
    note(wf, WAN_NOTE.format(files=files_text("WAN 2.1", files), tips=COMMON_TIPS), size=(1100, 330))
    return wf


def custom_sampler_workflow():
    wf = Workflow("ledits_custom_sampler", "LEDITS++ with SamplerCustomAdvanced",
                  "The LEDITS++ edit as a GUIDER + SAMPLER pair for SamplerCustomAdvanced (DisableNoise, "
                  "the inversion's sigmas and noisy latent).")
    loader_block(wf, SD15_CKPT)
    inversion_block(wf)
    last = concept_block(wf, [CONCEPT_ADD, CONCEPT_REMOVE])
    wf.node(8, "LEditsPPGuider", (1200, 440), EDIT, size=[340, 190])
    wf.link(1, 0, 8, "model")
    wf.link(5, 0, 8, "inversion")
    wf.link(last, 0, 8, "concepts")
    wf.node(13, "LEditsPPSampler", (1200, 680), size=[340, 70])
    wf.link(5, 0, 13, "inversion")
    wf.node(14, "DisableNoise", (1200, 800), size=[340, 60])
    wf.node(15, "SamplerCustomAdvanced", (1600, 440), size=[360, 330])
    wf.link(14, 0, 15, "noise")
    wf.link(8, 0, 15, "guider")
    wf.link(13, 0, 15, "sampler")
    wf.link(5, 2, 15, "sigmas")
    wf.link(5, 1, 15, "latent_image")
    wf.group("4. Guider + sampler", [8, 13, 14], COLORS["edit"])
    wf.node(9, "VAEDecode", (2020, 440))
    wf.link(15, 0, 9, "samples")
    wf.link(1, 2, 9, "vae")
    wf.node(10, "SaveImage", (2020, 580), ["ledits_custom_sampler"], size=[400, 420])
    wf.link(9, 0, 10, "images")
    wf.group("5. Sample, decode, save", [15, 9, 10], COLORS["out"])
    note(wf, f"""
LEDITS++ through SamplerCustomAdvanced: the same edit as Guided Edit, split into ComfyUI's custom
sampling pieces so you can swap them or insert your own nodes.

- LEDITS++ Guider: the edit (concepts, optional target prompt) as a GUIDER.
- LEDITS++ Sampler: replays the inversion's stored noise (DPM-Solver++ 2M SDE).
- DisableNoise: the start latent is the inversion's noisy_latent, so no extra noise is added.
- sigmas and latent_image come from the Inversion's `sigmas` and `noisy_latent` outputs.
Keep these four connections as shown; any other noise, sampler or schedule breaks the exact replay.
{COMMON_TIPS}""")
    return wf


def attention_masks_workflow():
    wf = Workflow("ledits_attention_masks", "LEDITS++ text-driven masks",
                  "Attention Capture + Guided Edit + Mask From Attention: a MASK and a heat-map for any word, "
                  "e.g. to feed inpainting or compositing.")
    loader_block(wf, SD15_CKPT)
    inversion_block(wf)
    wf.node(16, "LEditsPPAttentionCapture", (790, 860), ["latent/4", False, "auto"], size=[340, 140])
    wf.link(1, 0, 16, "model")
    concept = ["cat", 5.0, 0.85, False, 0, 10000, "attention"]
    wf.node(6, "LEditsPPEditConcept", (790, 1040), concept, title="Word to mask", size=[340, 250])
    wf.link(1, 1, 6, "clip")
    wf.group("3. What to find", [16, 6], COLORS["concepts"])
    wf.node(8, "LEditsPPGuidedEdit", (1200, 440), EDIT, size=GROWN_EDIT)
    wf.link(16, 0, 8, "model")
    wf.link(5, 0, 8, "inversion")
    wf.link(6, 0, 8, "concepts")
    wf.node(17, "LEditsPPMaskFromAttention", (1620, 440), [0, -1, -1.0, True, "image"], size=GROWN_MASK)
    wf.link(8, 2, 17, "attention")
    wf.group("4. Record and turn into a mask", [8, 17], COLORS["edit"])
    wf.node(18, "PreviewImage", (2080, 440), title="Attention heat-map", size=[340, 320])
    wf.link(17, 1, 18, "images")
    wf.node(11, "MaskToImage", (2080, 820))
    wf.link(17, 0, 11, "mask")
    wf.node(10, "SaveImage", (2080, 940), ["ledits_mask"], title="Binary mask (saved)", size=[340, 320])
    wf.link(11, 0, 10, "images")
    wf.group("5. Heat-map and mask", [18, 11, 10], COLORS["out"])
    note(wf, """
LEDITS++ text-driven masks: where in the photo does the model "see" a word?

1. Load a checkpoint and a photo; the photo is inverted once.
2. Type the word in "Word to mask" (mask_type "attention" uses the cross-attention map alone).
3. Attention Capture records that word's cross-attention at latent/4 during the Guided Edit replay.
4. Mask From Attention turns it into a heat-map (previewed) and a binary MASK (saved as an image):
   concept 0 = the first concept, step -1 = the last step, threshold -1 = the concept's own
   threshold (0.85 keeps the top 15 %).
Connect the MASK output to an inpainting or compositing graph (e.g. VAE Encode (for Inpainting),
Set Latent Noise Mask, ImageCompositeMasked). The edited latent is not needed here.
""")
    return wf


def reconstruct_workflow():
    wf = Workflow("ledits_reconstruct", "LEDITS++ exact reconstruction check",
                  "Inversion and replay with no concept: the output equals the VAE round trip of the input "
                  "(difference image black).")
    loader_block(wf, SD15_CKPT)
    inversion_block(wf)
    wf.node(8, "LEditsPPGuidedEdit", (1200, 440), EDIT, size=GROWN_EDIT)
    wf.link(1, 0, 8, "model")
    wf.link(5, 0, 8, "inversion")
    wf.node(9, "VAEDecode", (1620, 440))
    wf.link(8, 0, 9, "samples")
    wf.link(1, 2, 9, "vae")
    wf.node(10, "SaveImage", (1620, 580), ["ledits_reconstruct"], title="Replay (no concepts)", size=[360, 360])
    wf.link(9, 0, 10, "images")
    wf.group("3. Replay without concepts", [8, 9, 10], COLORS["edit"])
    wf.node(19, "VAEDecode", (2040, 440), title="VAE round trip of the input")
    wf.link(3, 0, 19, "samples")
    wf.link(1, 2, 19, "vae")
    wf.node(20, "ImageBlend", (2040, 580), [1.0, "difference"], title="Difference (black = exact)",
            size=[320, 130])
    wf.link(9, 0, 20, "image1")
    wf.link(19, 0, 20, "image2")
    wf.node(21, "PreviewImage", (2040, 760), title="Difference", size=[340, 320])
    wf.link(20, 0, 21, "images")
    wf.group("4. Compare", [19, 20, 21], COLORS["out"])
    note(wf, """
LEDITS++ exactness check: run it on your own checkpoint and photo.

The photo is inverted and replayed with no edit concept. With schedule "exact" and batch_steps 1,
the replay returns the encoded photo exactly: the saved image equals the VAE round trip of the
input, and the difference preview is black. If it is not, the checkpoint or a patch on the model
changes the model between inversion and replay (e.g. a LoRA applied to only one of them).

Schedule "diffusers" ends at sigma 0 like the diffusers pipeline and is close but not exact.
""")
    return wf


WORKFLOWS = [
    edit_workflow("ledits_edit_sd15", "sd15"),
    edit_workflow("ledits_edit_sdxl", "sdxl"),
    edit_workflow("ledits_edit_sd35", "sd35"),
    edit_workflow("ledits_edit_flux", "flux"),
    *(edit_workflow(f"ledits_edit_{family}", family)
      for family in ("qwen_image", "flux2", "z_image", "hidream", "chroma")),
    video_edit_workflow(),
    custom_sampler_workflow(),
    attention_masks_workflow(),
    reconstruct_workflow(),
]


# ----------------------------------------------------------------------------------------------
def main():
    OUT.mkdir(exist_ok=True)
    for wf in WORKFLOWS:
        (OUT / f"{wf.name}.json").write_text(json.dumps(wf.to_json(), indent=2) + "\n")
        thumbnail(wf, OUT / f"{wf.name}.jpg")
    for wf in WORKFLOWS:
        print(f"{wf.name}: {len(wf.nodes)} nodes, {len(wf.links)} links, "
              f"thumbnail {(OUT / (wf.name + '.jpg')).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
