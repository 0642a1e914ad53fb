"""The example workflows in workflows/ (UI format) on a real ComfyUI server.

Every file is checked against the running server's /object_info (node types, socket inputs and
outputs, link types, every positional widget value incl. the seed's control_after_generate value),
converted UI -> API with comfyui-autograph (the maintained converter, as the front end does it),
run end to end with the tiny checkpoints swapped in (SDXL workflow -> tiny SDXL, SD3.5 -> tiny
SD3.5, Flux and the newer families -> the test-only in-memory tiny loader node in place of Load
Checkpoint or of their separate loaders; others -> tiny SD1.5) and small input images (a 5-frame
clip for the WAN video template), and must write its images / clip. A workflow that cannot run
fails here; one whose family this host lacks (Flux.2, Z-Image before 0.33) skips with the reason.
"""
import json
import pathlib
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO / "workflows"
WORKFLOWS = sorted(p.stem for p in WORKFLOW_DIR.glob("*.json"))
EXPECTED = {"ledits_edit_sd15", "ledits_edit_sdxl", "ledits_edit_sd35", "ledits_edit_flux",
            "ledits_edit_qwen_image", "ledits_edit_flux2", "ledits_edit_z_image", "ledits_edit_hidream",
            "ledits_edit_chroma", "ledits_edit_wan", "ledits_custom_sampler", "ledits_attention_masks",
            "ledits_reconstruct"}
UI_ONLY = {"Note", "MarkdownNote"}                 # front-end-only nodes (not in /object_info)
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# (tiny layout, input image size[, steps]): SD1.5 latent <= 32x32, SDXL cheap up to 64x64; non-square.
# The newer families run 4 steps: the run checks the graph, not the edit (tests/host/test_family_*).
RUN_AS = {"ledits_edit_sdxl": ("sdxl", (192, 128)), "ledits_edit_sd35": ("sd35", (96, 64)),
          "ledits_edit_flux": ("flux", (96, 64)), "ledits_edit_qwen_image": ("qwen_image", (64, 48), 4),
          "ledits_edit_flux2": ("flux2_dev", (96, 64), 4), "ledits_edit_z_image": ("zimage", (64, 48), 4),
          "ledits_edit_hidream": ("hidream", (64, 48), 4), "ledits_edit_chroma": ("chroma", (96, 64), 4),
          "ledits_edit_wan": ("wan21", (64, 48), 4)}
IN_MEMORY_LOADER = "LeditsTestTinyModel"    # tests/host/fixture_node: MODEL, CLIP, VAE like Load Checkpoint
DEFAULT_RUN = ("sd15", (128, 64))
TEST_STEPS = 12             # the workflows say 30; fewer keep the suite cheap on 2 shared CPU cores
CLIP_FRAMES = 5             # the video template's test clip: 4k+1 frames (WAN's VAE: 1 + 4 per latent frame)
SAVE_NODES = {"SaveImage", "SaveVideo"}
# first bytes of what Save Image / Save Video write (by file extension)
MAGIC = {".png": (0, b"\x89PNG\r\n\x1a\n"), ".mp4": (4, b"ftyp"), ".webm": (0, b"\x1a\x45\xdf\xa3")}
TIMINGS = {}


def autograph():
    """The converter (a test dependency: .ci/run installs it into each host's venv)."""
    try:
        import autograph as module
        return module
    except ImportError:
        pytest.fail(f"comfyui-autograph is missing in {sys.executable}: run `{sys.executable} -m pip install "
                    "'comfyui-autograph>=2.3'` (it converts the UI workflows like the front end)", pytrace=False)


def load(name):
    return json.loads((WORKFLOW_DIR / f"{name}.json").read_text())


def spec_of(info, name):
    for section in ("required", "optional"):
        if name in (info["input"].get(section) or {}):
            return info["input"][section][name]
    raise KeyError(name)


def widget_slots(class_type, object_info, values=()):
    """The positional widgets_values layout the front end saves for a node type:
    [(kind, input name, spec, optional)], kind "value" | "control" (control_after_generate) |
    "upload". A dynamic combo (0.33's Save Video `format`) is followed by the inputs of the option
    that `values` selects, named "<combo>.<input>" as the converter names them."""
    autograph()
    from autograph.convert import get_widget_input_names
    info = object_info[class_type]
    optional = set(info["input"].get("optional") or {})
    slots = []

    def add(name, spec, is_optional):
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        slots.append(("value", name, spec, is_optional))
        position = len(slots) - 1
        # the front end adds a control widget to INT inputs named seed/noise_seed or flagged so
        if opts.get("control_after_generate") or name in ("seed", "noise_seed"):
            slots.append(("control", name, spec, is_optional))
        if opts.get("image_upload") or opts.get("video_upload"):
            slots.append(("upload", name, spec, is_optional))
        if spec[0] == "COMFY_DYNAMICCOMBO_V3" and position < len(values):
            chosen = next((o for o in opts.get("options", []) if o.get("key") == values[position]), {})
            for section in ("required", "optional"):
                for sub, sub_spec in ((chosen.get("inputs") or {}).get(section) or {}).items():
                    add(f"{name}.{sub}", sub_spec, is_optional or section == "optional")

    for name in get_widget_input_names(class_type, object_info, use_api=True):
        if "." not in name:
            add(name, spec_of(info, name), name in optional)
    return slots


def value_problem(value, spec):
    """None when `value` is valid for the widget spec, else the reason."""
    head = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(head, list):
        return None if value in head else f"{value!r} not in {head[:8]}"
    if head == "COMBO":
        options = opts.get("options") or []
        return None if value in options else f"{value!r} not in {options[:8]}"
    if head == "COMFY_DYNAMICCOMBO_V3":
        keys = [o.get("key") for o in opts.get("options") or []]
        return None if value in keys else f"{value!r} not in {keys[:8]}"
    if head == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an int"
    elif head == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
    elif head == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a bool"
    elif head == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if head in ("INT", "FLOAT"):
        if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
            return f"{value!r} outside [{opts.get('min')}, {opts.get('max')}]"
    return None


def check_against_object_info(ui, object_info):
    """Strict checks of a UI workflow; returns {node id: {widget name: value}} and the problems."""
    problems, widgets = [], {}
    nodes = {n["id"]: n for n in ui["nodes"]}
    for node in ui["nodes"]:
        kind, nid = node["type"], node["id"]
        if kind in UI_ONLY:
            continue
        if kind not in object_info:
            problems.append(f"node {nid}: type {kind} is not registered on this server")
            continue
        info = object_info[kind]
        values = node.get("widgets_values") or []
        slots = widget_slots(kind, object_info, values)
        widget_names = {name for k, name, _, _ in slots if k == "value"}
        sockets = [(name, spec_of(info, name)[0]) for section in ("required", "optional")
                   for name in (info["input"].get(section) or {}) if name not in widget_names]
        saved = [(i["name"], i["type"]) for i in node.get("inputs", []) if not i.get("widget")]
        if saved != sockets:
            problems.append(f"node {nid} ({kind}): socket inputs {saved} != /object_info {sockets}")
        outputs = [(o["name"], o["type"]) for o in node.get("outputs", [])]
        want = list(zip(info["output_name"], info["output"]))
        if outputs != want[:len(outputs)]:    # a newer host may append outputs (0.33: Save Image's `images`)
            problems.append(f"node {nid} ({kind}): outputs {outputs} do not match /object_info {want}")
        # trailing optional widgets a newer host added (0.33: Create Video's bit_depth) may be absent:
        # the front end gives them their defaults, as for ComfyUI's own templates
        if len(values) > len(slots) or not all(s[3] for s in slots[len(values):]):
            problems.append(f"node {nid} ({kind}): {len(values)} widgets_values for the layout "
                            f"{[(k, n) for k, n, _, _ in slots]}")
            continue
        widgets[nid] = {}
        for (slot, name, spec, _), value in zip(slots, values):
            if slot == "control":
                if value not in CONTROL_VALUES:
                    problems.append(f"node {nid} ({kind}): control_after_generate of {name} is {value!r}")
            elif slot == "value":
                reason = value_problem(value, spec)
                if reason:
                    problems.append(f"node {nid} ({kind}): widget {name}: {reason}")
                widgets[nid][name] = value
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        if not (out["type"] == inp["type"] == kind) or inp["link"] != link_id or link_id not in (out["links"] or []):
            problems.append(f"link {link_id}: {src}.{src_slot} ({out['type']}) -> {dst}.{inp['name']} "
                            f"({inp['type']}) as {kind} is inconsistent")
    return widgets, problems


def write_image(path, size, seed):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    gradient = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    pixels = np.clip(gradient * 0.6 + rng.uniform(0, 100, (h, w, 3)), 0, 255).astype("uint8")
    Image.fromarray(pixels).save(path)


def write_clip(path, size, seed, frames=CLIP_FRAMES, fps=16):
    """A short H.264 MP4 (PyAV, which Load Video itself reads with): a gradient moving over noise."""
    import av
    import numpy as np
    rng = np.random.default_rng(seed)
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for k in range(frames):
            gradient = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
            pixels = np.clip(np.roll(gradient, 4 * k, axis=1) * 0.6 + rng.uniform(0, 100, (h, w, 3)), 0, 255)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels.astype("uint8"), format="rgb24")))
        container.mux(stream.encode())


# Separate loaders of a family's own templates -> the output slot of the tiny loader that replaces them.
SPLIT_LOADER_SLOTS = {"UNETLoader": 0, "CLIPLoader": 1, "DualCLIPLoader": 1, "QuadrupleCLIPLoader": 1,
                      "VAELoader": 2}


def swap_split_loaders(ui, layout):
    """Load Diffusion Model + CLIP loader + Load VAE -> one in-memory tiny loader (the Load Diffusion
    Model node's id keeps it), links rewired to its MODEL / CLIP / VAE outputs."""
    loaders = [n for n in ui["nodes"] if n["type"] in SPLIT_LOADER_SLOTS]
    unet = next((n for n in loaders if n["type"] == "UNETLoader"), None)
    if unet is None:
        return ui
    outputs = [{"name": kind, "type": kind, "links": [], "slot_index": slot}
               for slot, kind in enumerate(("MODEL", "CLIP", "VAE"))]
    by_id = {n["id"]: SPLIT_LOADER_SLOTS[n["type"]] for n in loaders}
    for link in ui["links"]:
        if link[1] in by_id:
            link[1], link[2] = unet["id"], by_id[link[1]]
            outputs[link[2]]["links"].append(link[0])
    unet.update(type=IN_MEMORY_LOADER, widgets_values=[layout, 0, "fixed"], outputs=outputs)
    ui["nodes"] = [n for n in ui["nodes"] if n is unet or n["id"] not in by_id]
    return ui


def swap_for_test(ui, layout, ckpt, image, prefix, steps=TEST_STEPS, size=None):
    """The test's copy: tiny checkpoint, small input image / clip, own output prefix, fewer steps
    (a scheduler feeding the Inversion too, at the input's size)."""
    ui = swap_split_loaders(ui, layout)
    for node in ui["nodes"]:
        if node["type"] == "CheckpointLoaderSimple" and ckpt is None:
            node["type"], node["widgets_values"] = IN_MEMORY_LOADER, [layout, 0, "fixed"]
        elif node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"][0] = ckpt
        elif node["type"] in ("LoadImage", "LoadVideo"):
            node["widgets_values"][0] = image
        elif node["type"] == "LEditsPPInversion":
            node["widgets_values"][0] = min(node["widgets_values"][0], steps)
        elif node["type"] == "Flux2Scheduler":
            node["widgets_values"] = [min(node["widgets_values"][0], steps), *(size or node["widgets_values"][1:])]
        elif node["type"] in SAVE_NODES:
            node["widgets_values"][0] = f"{prefix}_{node['widgets_values'][0]}".replace("/", "_")
    return ui


@pytest.fixture(scope="module")
def inputs(server, tiny_ckpt):
    """Writes the input images; returns name -> (ckpt name, image name)."""
    chosen = {}
    for i, name in enumerate(WORKFLOWS):
        layout, size = RUN_AS.get(name, DEFAULT_RUN)[:2]
        if any(n["type"] == "LoadVideo" for n in load(name)["nodes"]):
            image = f"wf_{name}.mp4"
            write_clip(server.dirs["input"] / image, size, seed=i)
        else:
            image = f"wf_{name}.png"
            write_image(server.dirs["input"] / image, size, seed=i)
        chosen[name] = (layout, tiny_ckpt.get(layout), image)
    return chosen


@pytest.fixture(scope="module")
def object_info(server, inputs):
    """The server's full /object_info, read after the input images exist (LoadImage's list)."""
    return server.get_json("/object_info")


def test_workflow_folder_is_what_users_see():
    assert EXPECTED <= set(WORKFLOWS), f"missing workflows: {EXPECTED - set(WORKFLOWS)}"
    for path in WORKFLOW_DIR.iterdir():
        assert path.suffix in (".json", ".jpg"), f"unexpected file in workflows/: {path.name}"
    for name in WORKFLOWS:
        ui = load(name)
        assert isinstance(ui.get("nodes"), list) and isinstance(ui.get("links"), list), \
            f"{name}.json is not UI format (API-format copies do not belong in workflows/)"
        assert ui.get("version") == 0.4 and ui.get("groups") and "extra" in ui, name
        notes = [n for n in ui["nodes"] if n["type"] in UI_ONLY]
        assert notes and len(notes[0]["widgets_values"][0]) > 200, f"{name}: no explanatory Note node"
        thumb = WORKFLOW_DIR / f"{name}.jpg"
        assert thumb.is_file() and 0 < thumb.stat().st_size < 100_000, f"{name}: thumbnail missing or too big"
        assert thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{name}.jpg is not a JPEG"


def test_server_lists_the_templates(server):
    listed = server.get_json("/workflow_templates")
    assert sorted(listed.get(server.pack_folder, [])) == WORKFLOWS, listed
    status, body = server.http("GET", f"/api/workflow_templates/{server.pack_folder}/{WORKFLOWS[0]}.jpg")
    assert status == 200 and body[:3] == b"\xff\xd8\xff"
    status, body = server.http("GET", f"/api/workflow_templates/{server.pack_folder}/{WORKFLOWS[0]}.json")
    assert status == 200 and body["nodes"]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs(name, server, inputs, object_info, comfy_host, capsys):
    import comfyui_version
    convert_with_errors = autograph().convert_with_errors
    layout, ckpt, image = inputs[name]
    run = RUN_AS.get(name, DEFAULT_RUN)
    steps, size = (run[2] if len(run) > 2 else TEST_STEPS), run[1]
    skipped = comfy_host["tiny"].SKIPPED_LAYOUTS
    if layout in skipped:
        reason = f"{name}: ComfyUI {comfyui_version.__version__} lacks this family: {skipped[layout]}"
        with capsys.disabled():
            print(f"\n[workflow] SKIPPED {reason}")
        pytest.skip(reason)
    ui = swap_for_test(load(name), layout, ckpt, image, prefix=f"wf_{name}", steps=steps, size=list(size))
    widgets, problems = check_against_object_info(ui, object_info)
    assert not problems, f"{name}.json does not match this server's /object_info:\n" + "\n".join(problems)

    result = convert_with_errors(ui, node_info=object_info)
    assert result.ok and not result.errors, f"{name}: conversion failed: {result.errors}"
    skipped = [w.message for w in result.warnings if "Note" not in str(w.details)]
    assert not skipped, f"{name}: converter warnings: {skipped}"
    api = json.loads(json.dumps(dict(result.data)))
    runnable = {str(n["id"]) for n in ui["nodes"] if n["type"] not in UI_ONLY}
    assert set(api) == runnable, f"{name}: converted nodes {sorted(api)} != {sorted(runnable)}"
    for nid, values in widgets.items():      # the converter put every widget where the front end does
        for key, value in values.items():
            assert api[str(nid)]["inputs"].get(key) == value, (name, nid, key, api[str(nid)]["inputs"])
    for _, src, src_slot, dst, dst_slot, _ in ui["links"]:
        input_name = next(n for n in ui["nodes"] if n["id"] == dst)["inputs"][dst_slot]["name"]
        assert api[str(dst)]["inputs"][input_name] == [str(src), src_slot], (name, dst, input_name)

    started = time.monotonic()
    entry = server.post_prompt(api)
    wall = time.monotonic() - started
    stamps = {event: data.get("timestamp") for event, data in entry["status"].get("messages", [])}
    executed = (stamps["execution_success"] - stamps["execution_start"]) / 1000 \
        if stamps.get("execution_success") and stamps.get("execution_start") else wall
    written = []
    for node_id, output in entry["outputs"].items():
        for item in output.get("images", []):
            body = server.view(item)           # served back by /view (output and temp/preview files)
            offset, magic = MAGIC.get(pathlib.Path(item["filename"]).suffix.lower(), (0, b"?"))
            assert body[offset:offset + len(magic)] == magic, f"{name}: {item} is not what its name says"
            written.append(item)
    saves = [n for n in ui["nodes"] if n["type"] in SAVE_NODES]
    assert saves and all(str(n["id"]) in entry["outputs"] for n in saves), f"{name}: Save node wrote nothing"
    assert written, f"{name}: no images written"
    if any(n["type"] == "LoadVideo" for n in ui["nodes"]):
        clips = [i for i in written if i["filename"].lower().endswith((".mp4", ".webm"))]
        masks = [i for n in ui["nodes"] if n["type"] == "PreviewImage" for i in entry["outputs"][str(n["id"])]["images"]]
        latent_frames = 1 + (CLIP_FRAMES - 1) // 4               # one mask per latent frame and concept
        assert len(clips) == 1 and len(masks) == 2 * latent_frames, (name, clips, masks)
    TIMINGS[name] = executed
    with capsys.disabled():
        print(f"\n[workflow] {name} on ComfyUI {comfyui_version.__version__} (tiny {layout}, "
              f"{'x'.join(map(str, size))} px, {steps} steps): executed in {executed:.2f} s "
              f"({wall:.2f} s wall), {len(written)} images")
