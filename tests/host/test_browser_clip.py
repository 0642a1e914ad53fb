"""The canvas for clips (issue #16): Guided Edit / Mask From Attention on a tiny WAN 2.1 clip show a
strip of frames in their mask previews, and the scrubber gets a frame slider beside the step slider
(both change the picture; compared in pixels). The payload stays bounded: at most MAX_FRAMES latent
frames and MAX_PAYLOAD_BYTES of maps, downscaled latent-size backgrounds.

The first tests run in-process (no browser); the browser test skips with one loud line when chromium
or playwright is missing. Screenshots go to test-artifacts/browser-<ComfyUI version>/ (clip_*).
"""
import base64
import json
import random
import sys
import time

import pytest
import torch
from ledits_browser import VIEWPORT, open_browser
from test_family_wan import concepts_for, encode, guided_edit, invert, load_wan, video_latent  # noqa: F401 (fixture)

EDIT_NODE = "LEditsPPGuidedEdit"
MASK_NODE = "LEditsPPMaskFromAttention"
RUN_TIMEOUT_S = 600

browser = pytest.fixture(scope="module")(open_browser)


@pytest.fixture(scope="module")
def ui_outputs(comfy_host):
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.ui_outputs"]


def _data(payload):
    f = len(payload["frames"])
    shape = (len(payload["steps"]), len(payload["labels"]), payload["batch"], f, 2, *payload["grid"])
    return torch.frombuffer(bytearray(base64.b64decode(payload["data"])), dtype=torch.uint8).reshape(shape)


def test_clip_previews_and_payload_carry_frames(load_wan, run_node, ui_outputs):
    """A 20-frame clip: the payload carries 16 evenly spaced frames (first and last) with their own
    masks (= the recorded per-frame masks) and backgrounds; the preview is a strip of 8 frames; an
    image-sized latent of one frame keeps the image layout."""
    model, clip, _ = load_wan("wan21")
    frames, h, w = 20, 8, 12
    latent = video_latent("wan21", 1, frames, h, w, seed=3)
    inversion = invert(run_node, model, latent, 3, encode(run_node, clip, ""))[0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "attention"), ("rain", 4.0, True, "intersect")],
                            threshold=0.7)
    edited, _, record = guided_edit(run_node, model, inversion, concepts)
    assert record.steps[-1][0][1].shape == (1, frames, h // 4, w // 4)          # pooled masks keep their frames
    ui = ui_outputs.guided_edit_ui(model, edited["samples"], record, record.final_masks)
    payload = ui[ui_outputs.UI_KEY][0]
    assert payload["version"] == 2 and payload["total_frames"] == frames
    assert payload["frames"] == ui_outputs.spread(frames, ui_outputs.MAX_FRAMES)
    assert len(payload["frames"]) == ui_outputs.MAX_FRAMES and payload["frames"][0] == 0
    assert payload["frames"][-1] == frames - 1 and len(payload["backgrounds"]) == ui_outputs.MAX_FRAMES
    data = _data(payload)
    grid = tuple(payload["grid"])
    assert grid == (h // 4, w // 4)
    for k, t in enumerate(payload["frames"]):
        expected = (record.steps[-1][0][1][0, t].clamp(0, 1) * 255).round().to(torch.uint8)
        assert torch.equal(data[-1, 0, 0, k, 0], expected)
    assert not torch.equal(data[-1, 0, 0, 0, 1], data[-1, 0, 0, -1, 1])      # frames differ
    size = len(json.dumps(payload))
    print(f"20-frame clip, 3 steps, 2 concepts, grid {grid}: payload {payload['bytes_per_step']} B per step, "
          f"{size} B as JSON")
    assert size < 2 * ui_outputs.MAX_PAYLOAD_BYTES

    background = ui_outputs.latent_rgb(model, edited["samples"])
    assert background.shape == (1, frames, h, w, 3)
    strip = ui_outputs.mask_preview_images(background, [m for m in record.final_masks], list(record.labels))
    tile = h * ui_outputs.preview_scale((h, w), ui_outputs.STRIP_TILE)
    rows = -(-ui_outputs.STRIP_FRAMES // ui_outputs.STRIP_COLUMNS)
    assert strip.shape[0] == 1 and strip.shape[1] >= rows * tile        # two rows of frames + the legend

    single = video_latent("wan21", 1, 1, h, w, seed=3)["samples"]
    assert ui_outputs.latent_rgb(model, single).shape == (1, h, w, 3)


def test_payload_bound_halves_maps_then_thins_frames_then_steps(ui_outputs):
    """A 480p 81-frame WAN clip (21 latent frames of 60x104), 30 steps, 3 concepts under 1 MiB."""
    import types
    steps = tuple(tuple((torch.rand(1, 21, 30, 52), torch.rand(1, 21, 15, 26)) for _ in range(3)) for _ in range(30))
    record = types.SimpleNamespace(labels=("+ a", "+ b", "- c"), thresholds=(0.9,) * 3, steps=steps,
                                   latent_size=(60, 104))
    payload = ui_outputs.step_payload(record, torch.rand(1, 21, 60, 104, 3))
    raw = len(base64.b64decode(payload["data"]))
    print(f"480p 81 frames, 30 steps, 3 concepts: {len(payload['frames'])} frames, {len(payload['steps'])} steps, "
          f"grid {payload['grid']}, {raw} B of maps, {len(json.dumps(payload))} B as JSON")
    assert raw <= ui_outputs.MAX_PAYLOAD_BYTES and len(payload["frames"]) <= ui_outputs.MAX_FRAMES
    assert payload["frames"][0] == 0 and payload["frames"][-1] == 20
    small = ui_outputs.step_payload(record, torch.rand(1, 21, 60, 104, 3), max_bytes=200_000)
    assert len(base64.b64decode(small["data"])) <= 200_000 and 4 <= len(small["frames"]) < 16 and min(small["grid"]) >= 8


def _clip_prompt(seed):
    """Tiny WAN 2.1 (in memory) -> 21 video frames of 192x128 (6 latent frames of 24x16) -> Inversion ->
    two concepts -> Guided Edit; its attention -> Mask From Attention -> preview of its heat-map."""
    return {
        "1": {"class_type": "LeditsTestTinyModel", "inputs": {"layout": "wan21", "seed": 0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 192, "height": 128, "length": 21,
                                                                  "batch_size": 1}},
        "4": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": ["3", 0], "steps": 4, "skip": 0.15, "seed": seed, "schedule": "exact",
            "source_cfg": 5.0, "negative": ["2", 0]}},
        "5": {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": "a dog", "scale": 5.0, "threshold": 0.7, "reverse": False, "warmup": 1,
            "cooldown": 10000, "mask_type": "attention"}},
        "6": {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": "rain", "scale": 4.0, "threshold": 0.7, "reverse": True, "warmup": 0,
            "cooldown": 10000, "mask_type": "attention", "concepts": ["5", 0]}},
        "7": {"class_type": EDIT_NODE, "inputs": {
            "model": ["1", 0], "inversion": ["4", 0], "concepts": ["6", 0], "cfg": 5.0, "guidance_rescale": 0.0}},
        "8": {"class_type": MASK_NODE, "inputs": {
            "attention": ["7", 2], "concept": -1, "step": -1, "threshold": -1.0, "smoothing": True,
            "resolution": "image"}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 1]}},
    }


def _pixels(path):
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype("int16")


def _changed(a, b):
    return float((abs(a - b).sum(-1) > 30).mean())


def _click_slider(browser, name, fraction):
    """Click the edit node's slider widget `name` at `fraction` of its width (the mouse path)."""
    x, y = browser.js("""([type, name, fraction]) => {
        const n = app.graph.nodes.find(n => n.type === type);
        const w = n.widgets.find(w => w.name === name);
        const y = (w.last_y ?? w.y) + 10;
        const margin = 15, width = (w.width ?? n.size[0]) - 2 * margin;
        const ds = app.canvas.ds, r = app.canvas.canvas.getBoundingClientRect();
        const x = margin + 3 + fraction * (width - 6);
        return [r.left + (n.pos[0] + x + ds.offset[0]) * ds.scale, r.top + (n.pos[1] + y + ds.offset[1]) * ds.scale];
    }""", [EDIT_NODE, name, fraction])
    browser.page.mouse.click(x, y)
    browser.page.wait_for_timeout(400)
    return browser.js("(t) => { const s = app.graph.nodes.find(n => n.type === t).__ledits_pp; return [s.step, s.frame]; }",
                      EDIT_NODE)


def _scrubber_clip(browser, box):
    top, height = browser.js("""(type) => {
        const n = app.graph.nodes.find(n => n.type === type);
        const w = n.widgets.find(w => w.name === 'ledits_pp_scrubber');
        return [w.last_y ?? w.y, w.computeSize ? w.computeSize(n.size[0])[1] : 300];
    }""", EDIT_NODE)
    return {"x": box["x"], "y": box["y"] + box["title"] + top, "width": box["width"], "height": height}


def test_clip_run_shows_frame_strip_and_frame_slider(browser, server, ui_outputs):
    api = _clip_prompt(random.Random(time.time_ns()).randrange(1, 10**6))
    browser.load_api_prompt(api, "ledits_clip_tiny")
    since = len(browser.console)
    browser.js("""() => { for (const n of app.graph.nodes) for (const w of n.widgets || [])
        if (w.name === 'control_after_generate' || w.name === 'control_before_generate') w.value = 'fixed'; }""")
    started = time.monotonic()
    entry = server.wait(browser.queue_from_front_end(), timeout=RUN_TIMEOUT_S)
    print(f"\nclip edit run {time.monotonic() - started:.1f} s")
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    ids = {n["class_type"]: i for i, n in entry["prompt"][2].items()}
    edit_ui = entry["outputs"][ids[EDIT_NODE]]
    payload = edit_ui["ledits_pp_steps"][0]
    assert payload["frames"] == list(range(6)) and payload["total_frames"] == 6 and len(edit_ui["images"]) == 1
    print(f"scrubber payload: {payload['bytes_per_step']} B per step, grid {payload['grid']}, "
          f"{len(json.dumps(payload))} B as JSON")
    assert entry["outputs"].get(ids[MASK_NODE], {}).get("images"), "Mask From Attention showed no preview"

    for node in (MASK_NODE, EDIT_NODE):      # the front end loads a node's previews when it is drawn
        browser.frame_node(node)
        browser.page.wait_for_function("""(type) => { const n = app.graph.nodes.find(n => n.type === type);
            app.canvas.setDirty(true, true);
            return n && n.imgs && n.imgs.length > 0 && n.imgs.every(i => i.complete); }""", arg=node, timeout=30000)
    assert browser.js("(t) => !!app.graph.nodes.find(n => n.type === t).__ledits_pp", EDIT_NODE)
    strip = browser.js("(t) => { const i = app.graph.nodes.find(n => n.type === t).imgs[0]; "
                       "return [i.naturalWidth, i.naturalHeight]; }", MASK_NODE)
    tile = ui_outputs.preview_scale((16, 24), ui_outputs.STRIP_TILE)          # 6 frames of 16x24 cells
    rows = -(-6 // ui_outputs.STRIP_COLUMNS)
    assert strip[0] >= ui_outputs.STRIP_COLUMNS * 24 * tile and strip[1] > rows * 16 * tile, \
        f"the Mask From Attention preview is not a strip of the clip's 6 frames: {strip}"
    widgets = browser.js("(t) => app.graph.nodes.find(n => n.type === t).widgets.map(w => w.name)", EDIT_NODE)
    assert {"preview step", "preview frame", "preview shows", "ledits_pp_scrubber"} <= set(widgets), widgets
    values = browser.js("(t) => app.graph.nodes.find(n => n.type === t).serialize().widgets_values", EDIT_NODE)
    assert len([v for v in values if v is not None]) == 2, f"scrubber widgets were serialised: {values}"

    box = browser.frame_node(MASK_NODE, left=900, top=150)
    browser.page.wait_for_timeout(300)
    browser.shot("clip_mask_from_attention_strip", clip=_pad(box))
    box = browser.frame_node(EDIT_NODE)
    browser.page.wait_for_timeout(400)
    browser.shot("clip_guided_edit")
    clip = _scrubber_clip(browser, box)
    assert browser.js("(t) => app.graph.nodes.find(n => n.type === t).__ledits_pp.frame", EDIT_NODE) == 0
    first_frame = _pixels(browser.shot("clip_scrubber_frame_first", clip=clip))
    assert _click_slider(browser, "preview frame", 1.0) == [3, 5]
    last_frame = _pixels(browser.shot("clip_scrubber_frame_last", clip=clip))
    frame_change = _changed(first_frame, last_frame)
    assert _click_slider(browser, "preview step", 0.0) == [0, 5]        # the step slider still works
    step_change = _changed(last_frame, _pixels(browser.shot("clip_scrubber_frame_last_step_first", clip=clip)))
    assert _click_slider(browser, "preview step", 1.0) == [3, 5]
    assert _click_slider(browser, "preview frame", 0.0) == [3, 0]
    again = _changed(first_frame, _pixels(browser.shot("clip_scrubber_frame_first_again", clip=clip)))
    print(f"scrubber pixels changed: frame 1 -> 6 {100 * frame_change:.1f}%, step 4 -> 1 {100 * step_change:.1f}%, "
          f"back to frame 1 {100 * again:.2f}%")
    assert frame_change > 0.01 and step_change > 0.01 and again < 0.002
    assert not browser.pack_errors(since), browser.pack_errors(since)


def _pad(box, pad=12):
    return {"x": max(0, box["x"] - pad), "y": max(0, box["y"] - pad), "width": box["width"] + 2 * pad,
            "height": min(VIEWPORT["height"] - max(0, box["y"] - pad), box["height"] + 2 * pad)}
