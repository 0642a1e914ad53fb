"""The pack in a real browser: Debian's chromium driven by Playwright against the real ComfyUI server
(the `server` fixture) -- workflows load through the front end, an edit runs (on a trained tiny model:
the object must be gone), the mask previews and the per-step scrubber appear and react to the slider
(compared in pixels), a node help page opens.

Skips with one loud line when chromium or the playwright package is missing (never downloads a browser).
Screenshots and the browser console go to test-artifacts/browser-<ComfyUI version>/.
"""
import json
import pathlib
import random
import time

import ledits_trained_templates as trained
import pytest
from ledits_browser import EXTENSION, VIEWPORT, open_browser

REPO = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
EDIT_NODE = "LEditsPPGuidedEdit"
MASK_NODE = "LEditsPPMaskFromAttention"
PACK_PREFIX = "LEditsPP"
RUN_TIMEOUT_S = 600
EDITED_STEPS = 30      # the templates' 30 Inversion steps: Guided Edit records a mask for each (measured)


browser = pytest.fixture(scope="module")(open_browser)


@pytest.fixture(scope="module")
def object_info(server):
    return server.get_json("/object_info")


def test_extension_loaded_and_help_pages_served(browser, object_info):
    names = browser.js("app.extensions.map(e => e.name)")
    assert names.count(EXTENSION) == 1, f"extension {EXTENSION} registered {names.count(EXTENSION)} times"
    scripts = [s for s in browser.server.get_json("/extensions") if s.endswith("/js/ledits_pp.js")]
    assert len(scripts) == 1, scripts
    pack_nodes = [n for n in object_info if n.startswith(PACK_PREFIX)]
    assert len(pack_nodes) == 7, pack_nodes
    for node_id in pack_nodes:
        folder = object_info[node_id]["python_module"].split(".")[1]
        status, body = browser.server.request(f"/extensions/{folder}/docs/{node_id}.md")
        assert status == 200 and body.strip(), f"help page of {node_id} not served ({status})"
    assert not browser.pack_errors(), browser.pack_errors()


def _widget_problems(browser, object_info):
    """Missing node types and invalid widget values of the pack's nodes in the loaded graph."""
    nodes = browser.js("""() => app.graph.nodes.map(n => ({id: n.id, type: n.type, virtual: !!n.isVirtualNode,
        errors: !!n.has_errors, widgets: (n.widgets || []).map(w => [w.name, w.type, w.value])}))""")
    problems = []
    for node in nodes:
        if node["virtual"]:
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"node {node['id']}: missing node type {node['type']!r}")
            continue
        if not node["type"].startswith(PACK_PREFIX):
            continue      # core loaders flag model/image files this server lacks: expected here
        if node["errors"]:
            problems.append(f"node {node['id']}: the front end flags {node['type']} with errors")
        spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name, kind, value in node["widgets"]:
            if name not in spec:
                continue
            type_name, options = spec[name][0], (spec[name][1] if len(spec[name]) > 1 else {})
            if isinstance(type_name, list) or type_name == "COMBO":
                choices = type_name if isinstance(type_name, list) else options.get("options", [])
                if value not in choices:
                    problems.append(f"node {node['id']} {node['type']}.{name}: {value!r} not in {choices}")
            elif type_name in ("INT", "FLOAT"):
                ok = isinstance(value, (int, float)) and options.get("min", -1e308) <= value <= options.get("max", 1e308)
                if not ok:
                    problems.append(f"node {node['id']} {node['type']}.{name}: {value!r} outside the input's range")
            elif value is None:
                problems.append(f"node {node['id']} {node['type']}.{name}: no value")
    return problems


def _workflow_files():
    return sorted(WORKFLOWS.glob("*.json")) if WORKFLOWS.is_dir() else []


def test_workflows_load_in_the_front_end(browser, object_info, comfy_host):
    """Every template loads with valid widgets; those of a family this host lacks (Flux.2, Z-Image
    before 0.33: their nodes, e.g. Flux2Scheduler, are missing too) are left out, said loudly."""
    from test_browser_templates import layout_of
    files = _workflow_files()
    if not files:
        pytest.skip(f"no workflows in {WORKFLOWS} yet: nothing to load")
    report = []
    for path in files:
        reason = comfy_host["tiny"].SKIPPED_LAYOUTS.get(layout_of(path.stem))
        if reason:
            print(f"\n[browser] {path.name} not loaded on ComfyUI {comfy_host['version']}: {reason}")
            continue
        data = json.loads(path.read_text())
        since = len(browser.console)
        if "nodes" in data:
            browser.load_ui_workflow(data, path.name)
        else:
            browser.load_api_prompt(data, path.name)
        problems = _widget_problems(browser, object_info)
        prompt = browser.js("async () => (await app.graphToPrompt()).output")
        kinds = {node["class_type"] for node in prompt.values()}
        browser.js("() => { app.canvas.setDirty(true, true); }")
        browser.shot("workflow_" + path.stem)
        errors = browser.pack_errors(since)
        report.append((path.name, problems, errors))
        assert any(k.startswith(PACK_PREFIX) for k in kinds), f"{path.name}: no LEDITS++ node in the API prompt"
    bad = [r for r in report if r[1] or r[2]]
    assert not bad, "\n".join(f"{name}: {problems} {errors}" for name, problems, errors in bad)


# ---------------------------------------------------------------------------------------------
# the edit run
# ---------------------------------------------------------------------------------------------
def _built_edit_prompt(ckpt, image):
    """API prompt of an SD1.5 edit: load image -> VAE encode -> inversion -> two concepts -> Guided Edit ->
    VAE decode/save; the edit's attention -> Mask From Attention -> preview of its heat-map."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": image}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": ["4", 0], "steps": 4, "skip": 0.15, "seed": 0, "schedule": "exact",
            "source_cfg": 3.5, "negative": ["2", 0]}},
        "6": {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": "glasses", "scale": 5.0, "threshold": 0.7, "reverse": False, "warmup": 1,
            "cooldown": 10000, "mask_type": "attention"}},
        "7": {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": "a cat", "scale": 4.0, "threshold": 0.8, "reverse": True, "warmup": 0,
            "cooldown": 10000, "mask_type": "attention", "concepts": ["6", 0]}},
        "8": {"class_type": EDIT_NODE, "inputs": {
            "model": ["1", 0], "inversion": ["5", 0], "concepts": ["7", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "ledits_browser"}},
    }


def _trained_edit_prompt(browser, server, workflow):
    """workflows/<workflow>.json on its trained tiny model (ledits_trained_templates.TRAINED: the model,
    the held-out scene it removes the first object of, concepts set to that object) at the template's
    own settings (30 steps, seed 0, node defaults), plus a Mask From Attention node: a real edit whose
    masks outline the object. The picture's name is new each run, so nothing is served from the cache."""
    path = WORKFLOWS / f"{workflow}.json"
    model, _, capture, _ = trained.TRAINED[workflow]
    image = f"ledits_browser_{workflow}_{random.Random(time.time_ns()).randrange(10**6)}.png"
    trained.write_scene(server.base / "input" / image, workflow)
    # the front end outlines a Load Image whose file is not in its list (red) until the lists refresh
    browser.js("async () => { if (app.refreshComboInNodes) await app.refreshComboInNodes(); }")
    browser.load_ui_workflow(json.loads(path.read_text()), path.name)
    browser.js(trained.SET_CONCEPTS, [trained.phrase(workflow), capture])
    api = browser.js("async () => (await app.graphToPrompt()).output")
    for node in api.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["class_type"], node["inputs"] = "LeditsTestTrainedModel", {"name": model}
        elif node["class_type"] == "LoadImage":
            node["inputs"]["image"] = image
    edit_id = next(i for i, n in api.items() if n["class_type"] == EDIT_NODE)
    if not any(n["class_type"] == MASK_NODE for n in api.values()):
        api["90"] = {"class_type": MASK_NODE, "inputs": {
            "attention": [edit_id, 2], "concept": -1, "step": -1, "threshold": -1.0, "smoothing": True,
            "resolution": "image"}}
        api["91"] = {"class_type": "PreviewImage", "inputs": {"images": ["90", 1]}}
    return api, f"{path.relative_to(REPO)} on {model}, scene {trained.TRAINED[workflow][1]}"


def _pixels(path):
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype("int16")


def _slider_point(browser, fraction):
    """Screen point on the step slider of the framed edit node at `fraction` of its width."""
    return browser.js("""([type, fraction]) => {
        const n = app.graph.nodes.find(n => n.type === type);
        const w = n.widgets.find(w => w.name === 'preview step');
        const y = (w.last_y ?? w.y) + 10;
        const margin = 15, width = (w.width ?? n.size[0]) - 2 * margin;
        const ds = app.canvas.ds, r = app.canvas.canvas.getBoundingClientRect();
        const x = margin + 3 + fraction * (width - 6);
        return [r.left + (n.pos[0] + x + ds.offset[0]) * ds.scale, r.top + (n.pos[1] + y + ds.offset[1]) * ds.scale];
    }""", [EDIT_NODE, fraction])


def _scrubber_clip(browser, box):
    band = browser.js("""(type) => {
        const n = app.graph.nodes.find(n => n.type === type);
        const w = n.widgets.find(w => w.name === 'ledits_pp_scrubber');
        const y = w.last_y ?? w.y;
        return [y, w.computeSize ? w.computeSize(n.size[0])[1] : 300];
    }""", EDIT_NODE)
    return {"x": box["x"], "y": box["y"] + box["title"] + band[0], "width": box["width"], "height": band[1]}


@pytest.mark.parametrize("workflow, layout", [("ledits_edit_sd15", "sd15"), ("ledits_edit_flux", "flux")])
def test_edit_run_shows_mask_previews_and_step_scrubber(browser, server, comfy_host, workflow, layout, capsys):
    """Previews and the step scrubber after a real edit run from the front end, on a trained UNet
    (SD1.5 layout) and a trained DiT (Flux dev: masks from joint attention on the token grid): the
    saved picture must have lost the object and the mask must outline it (measured on 0.33.0 and
    0.3.64 alike: blue square of scene 1000007 / red square of 1000004 removed, Guided Edit's MASK
    IoU 0.53 / 0.59, floor 0.3). Screenshots of the SD1.5 run feed the README (docs/images/); the
    Flux ones get a _flux suffix."""
    api, source = _trained_edit_prompt(browser, server, workflow)
    tag = "" if layout == "sd15" else f"_{layout}"
    print(f"\nedit workflow: {source}")
    browser.load_api_prompt(api, "ledits_edit_trained")
    since = len(browser.console)
    # queue through the front end (the Run button's code path); seeds stay as set ("fixed")
    browser.js("""() => { for (const n of app.graph.nodes) for (const w of n.widgets || [])
        if (w.name === 'control_after_generate' || w.name === 'control_before_generate') w.value = 'fixed'; }""")
    started = time.monotonic()
    entry = server.wait(browser.queue_from_front_end(), timeout=RUN_TIMEOUT_S)
    run_s = time.monotonic() - started
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    edit_id = next(i for i, n in entry["prompt"][2].items() if n["class_type"] == EDIT_NODE)
    mask_id = next(i for i, n in entry["prompt"][2].items() if n["class_type"] == MASK_NODE)
    edit_ui = entry["outputs"][edit_id]
    assert edit_ui.get("images") and edit_ui.get("ledits_pp_steps"), sorted(edit_ui)
    payload = edit_ui["ledits_pp_steps"][0]
    total = payload["total_steps"]
    scores = trained.check_real_edit(server, entry, workflow)
    with capsys.disabled():
        print(f"\n[browser edit] {workflow} on ComfyUI {comfy_host['version']}: run {run_s:.1f} s, {total} steps; "
              + "; ".join(f"{title}: {score}" for title, score in scores.items())
              + f"; scrubber payload {payload['bytes_per_step']} B per step, grid {payload['grid']}")
    assert total == EDITED_STEPS and payload["labels"] == [f"- {trained.phrase(workflow)}"], payload["labels"]
    assert entry["outputs"].get(mask_id, {}).get("images"), "Mask From Attention showed no preview"

    # the front end got the UI outputs: image previews and the scrubber widgets on the edit node
    browser.page.wait_for_function("""(type) => { const n = app.graph.nodes.find(n => n.type === type);
        return n && n.__ledits_pp && n.imgs && n.imgs.length > 0 && n.imgs.every(i => i.complete); }""",
                                   arg=EDIT_NODE, timeout=30000)
    browser.page.wait_for_function("""(type) => { const n = app.graph.nodes.find(n => n.type === type);
        return n && n.imgs && n.imgs.length > 0 && n.imgs.every(i => i.complete); }""", arg=MASK_NODE, timeout=30000)
    widgets = browser.js("""(type) => app.graph.nodes.find(n => n.type === type).widgets.map(w => w.name)""", EDIT_NODE)
    assert {"preview step", "preview shows", "ledits_pp_scrubber"} <= set(widgets), widgets
    serialized = browser.js("""(type) => { const n = app.graph.nodes.find(n => n.type === type);
        return [n.serialize().widgets_values, Object.keys(n.widgets)]; }""", EDIT_NODE)
    assert len([v for v in serialized[0] if v is not None]) == 2, f"scrubber widgets were serialised: {serialized}"

    box = browser.frame_node(MASK_NODE, left=900, top=150)
    browser.page.wait_for_timeout(300)
    browser.shot(f"mask_from_attention_preview{tag}", clip=_pad(box))
    box = browser.frame_node(EDIT_NODE)
    browser.page.wait_for_timeout(400)
    last = browser.shot(f"guided_edit_step_last{tag}", clip=_pad(box))
    scrub_clip = _scrubber_clip(browser, box)
    scrub_last = browser.shot(f"scrubber_step_last{tag}", clip=scrub_clip)
    assert browser.js("(t) => app.graph.nodes.find(n => n.type === t).__ledits_pp.step", EDIT_NODE) == total - 1

    # click the slider's left end with the mouse: step 1
    x, y = _slider_point(browser, 0.0)
    browser.page.mouse.click(x, y)
    browser.page.wait_for_timeout(400)
    step = browser.js("(t) => app.graph.nodes.find(n => n.type === t).__ledits_pp.step", EDIT_NODE)
    assert step == 0, f"clicking the slider's left end selected step index {step}"
    first = browser.shot(f"guided_edit_step_first{tag}", clip=_pad(box))
    browser.shot(f"scrubber_step_first{tag}", clip=scrub_clip)
    # then the step whose mask is largest: a real model's first and last step masks can both be
    # (nearly) empty at 4x4 cells, so that one is where the picture must change
    shares = trained.mask_share_per_step(payload)
    peak = max(range(total), key=lambda i: shares[i])
    x, y = _slider_point(browser, peak / (total - 1))
    browser.page.mouse.click(x, y)
    browser.page.wait_for_timeout(400)
    step = browser.js("(t) => app.graph.nodes.find(n => n.type === t).__ledits_pp.step", EDIT_NODE)
    assert step == peak, f"clicking the slider at step {peak + 1} of {total} selected step index {step}"
    a, b = _pixels(scrub_last), _pixels(browser.shot(f"scrubber_step_peak{tag}", clip=scrub_clip))
    # the input picture (Load Image's preview) under the Inversion, so the canvas (README) shows what
    # went; the scrubber at that step shows the mask over it
    browser.js("""() => { const g = app.graph, at = g.nodes.find(n => n.type === 'LEditsPPInversion');
        const n = g.nodes.find(n => n.type === 'LoadImage');
        n.pos = [at.pos[0], at.pos[1] + at.size[1] + 60]; n.size = [at.size[0], 330];
        app.canvas.setDirty(true, true); }""")
    browser.page.wait_for_function("""() => { const n = app.graph.nodes.find(n => n.type === 'LoadImage');
        return n.imgs && n.imgs.length > 0 && n.imgs.every(i => i.complete && i.naturalWidth > 0); }""", timeout=30000)
    browser.page.wait_for_timeout(400)
    browser.shot(f"edit_run_canvas{tag}")
    changed = float((abs(a - b).sum(-1) > 30).mean())
    print(f"scrubber pixels changed between step {total} (mask {shares[-1]:.0%}) and step {peak + 1} "
          f"(mask {shares[peak]:.0%}): {100 * changed:.1f}%")
    assert changed > 0.01, f"moving the slider changed only {100 * changed:.2f}% of the scrubber's pixels"
    # and back to the end: the picture returns
    x, y = _slider_point(browser, 1.0)
    browser.page.mouse.click(x, y)
    browser.page.wait_for_timeout(400)
    again = _pixels(browser.shot(f"scrubber_step_last_again{tag}", clip=scrub_clip))
    assert float((abs(a - again).sum(-1) > 30).mean()) < 0.002, "the last step does not redraw the same picture"

    # the attention view draws something else again
    browser.js("""(t) => { const n = app.graph.nodes.find(n => n.type === t);
        const w = n.widgets.find(w => w.name === 'preview shows'); w.value = 'attention'; w.callback?.('attention'); }""",
               EDIT_NODE)
    browser.page.wait_for_timeout(300)
    attention = _pixels(browser.shot(f"scrubber_attention_view{tag}", clip=scrub_clip))
    assert float((abs(a - attention).sum(-1) > 30).mean()) > 0.01
    assert first.exists() and last.exists()
    assert not browser.pack_errors(since), browser.pack_errors(since)


def _pad(box, pad=12):
    return {"x": max(0, box["x"] - pad), "y": max(0, box["y"] - pad), "width": box["width"] + 2 * pad,
            "height": min(VIEWPORT["height"] - max(0, box["y"] - pad), box["height"] + 2 * pad)}


def test_several_edit_nodes_and_graphs_without_the_pack(browser):
    """Two Guided Edit nodes get independent scrubbers; a graph without pack nodes is untouched."""
    since = len(browser.console)
    browser.js("async () => { await app.loadGraphData(); }")      # the default graph: no pack nodes
    browser.page.wait_for_timeout(300)
    types = browser.js("app.graph.nodes.map(n => n.type)")
    assert types and not any(t.startswith(PACK_PREFIX) for t in types)
    result = browser.js("""() => {
        const make = (x) => { const n = LiteGraph.createNode('LEditsPPGuidedEdit'); n.pos = [x, 50]; app.graph.add(n); return n; };
        const bytes = (steps, concepts, batch, cells, fill) => {
            const a = new Uint8Array(steps * concepts * batch * 2 * cells).fill(fill);
            let s = ''; for (const v of a) s += String.fromCharCode(v); return btoa(s); };
        const payload = (concepts, batch, fill) => ({version: 1, labels: concepts === 1 ? ['+ hat'] : ['+ hat', '- dog'],
            colors: ['#E69F00', '#56B4E9'], thresholds: [0.9, 0.9], batch, grid: [2, 2], steps: [0, 1, 2],
            total_steps: 3, flags: [[3, 3].slice(0, concepts), [3, 3].slice(0, concepts), [3, 3].slice(0, concepts)],
            bytes_per_step: concepts * batch * 8, data: bytes(3, concepts, batch, 4, fill), backgrounds: []});
        const a = make(100), b = make(500);
        a.onExecuted({ledits_pp_steps: [payload(1, 1, 255)]});
        b.onExecuted({ledits_pp_steps: [payload(2, 3, 128)]});
        b.onExecuted({images: []});                      // an output without the key changes nothing
        app.canvas.setDirty(true, true);
        app.canvas.draw(true, true);
        const names = (n) => n.widgets.map(w => w.name);
        return {a: names(a), b: names(b), stepsA: a.__ledits_pp.data.labels.length, stepsB: b.__ledits_pp.data.batch,
                imageValues: b.widgets.find(w => w.name === 'preview image').options.values,
                values: a.serialize().widgets_values};
    }""")
    assert "preview image" not in result["a"] and "preview image" in result["b"], result
    assert result["stepsA"] == 1 and result["stepsB"] == 3 and len(result["imageValues"]) == 3
    assert result["values"] == [7.5, 0], result["values"]
    browser.shot("two_edit_nodes")
    assert not browser.pack_errors(since), browser.pack_errors(since)


def test_help_page_opens_for_a_node(browser, tiny_ckpt, server):
    trained.write_scene(server.base / "input" / "ledits_browser.png", "ledits_edit_sd15")
    api = _built_edit_prompt(tiny_ckpt["sd15"], "ledits_browser.png")
    browser.load_api_prompt(api, "ledits_help")
    browser.frame_node(EDIT_NODE, left=700, top=300)
    browser.js("""(t) => { const n = app.graph.nodes.find(n => n.type === t); app.canvas.deselectAll?.();
        app.canvas.selectNode(n); app.canvas.setDirty(true, true); }""", EDIT_NODE)
    browser.page.wait_for_timeout(500)
    browser.page.locator('[data-testid="info-button"]').first.click()
    help_panel = browser.page.locator(".node-help-content").first
    help_panel.wait_for(state="visible", timeout=15000)
    browser.page.wait_for_function("""() => { const e = document.querySelector('.node-help-content');
        return e && e.innerText.includes('Guided Edit') && e.innerText.length > 200; }""", timeout=15000)
    text = help_panel.inner_text()
    browser.shot("help_page_guided_edit")
    assert "LEDITS++ Guided Edit" in text and "guidance_rescale" in text, text[:500]
