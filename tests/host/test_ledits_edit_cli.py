"""tools/ledits_edit.py, the one-command headless edit: its prompt is the example workflow, it runs
on a real ComfyUI as a subprocess (the install check on the trained tiny model of a clone and on
the random one, and a checkpoint file), and its errors are one clear line with a non-zero exit code."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "ledits_edit.py"
TIMEOUT_S = 900      # 2 shared CPU cores: a ComfyUI import + a tiny run can take minutes under load


def load_tool():
    spec = importlib.util.spec_from_file_location("ledits_edit_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(args, cwd, comfyui=None, timeout=TIMEOUT_S, **extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "LEDITS_HOST_RUN")}
    if comfyui:
        env["COMFYUI_PATH"] = str(comfyui)
    env.update({k: str(v) for k, v in extra_env.items()})
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def png_size(path):
    from PIL import Image
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


@pytest.mark.parametrize("workflow,sdxl", [("ledits_edit_sd15", False), ("ledits_edit_sdxl", True)])
def test_prompt_is_the_example_workflow(workflow, sdxl, server, tiny_ckpt):
    """The tool's API prompt equals comfyui-autograph's conversion of the shipped workflow."""
    from autograph import convert_with_errors
    tool = load_tool()
    ckpt = tiny_ckpt["sdxl" if sdxl else "sd15"]
    (server.dirs["input"] / "cli_same.png").write_bytes((REPO / "workflows" / f"{workflow}.jpg").read_bytes())
    object_info = server.get_json("/object_info")
    ui = json.loads((REPO / "workflows" / f"{workflow}.json").read_text())
    for node in ui["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"][0] = ckpt
        elif node["type"] == "LoadImage":
            node["widgets_values"][0] = "cli_same.png"
    result = convert_with_errors(ui, node_info=object_info)
    assert result.ok and not result.errors, result.errors
    converted = {k: {"class_type": v["class_type"], "inputs": v["inputs"]}
                 for k, v in json.loads(json.dumps(dict(result.data))).items()}
    prompt, _ = tool.edit_prompt(ckpt, "cli_same.png", ["glasses"], ["cat"], sdxl=sdxl)
    assert prompt == converted


def test_install_check_edits_with_the_trained_model_of_a_clone(comfy_host, tmp_path):
    """The README's install check in a git clone: no arguments -> the kept SD3 of bench/quality removes
    the red square of a held-out scene in 30 steps at 128 px, and the last line says it did (scored on
    the pixels). The cache is empty here, so the kept model is assembled into a checkpoint first."""
    out = tmp_path / "out"
    proc = run_tool(["--out", out], cwd=tmp_path, comfyui=comfy_host["root"], LEDITS_QUALITY_CACHE=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM-WEIGHT" not in proc.stderr and "trained on pictures of coloured shapes" in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edited.png", "input.png", "mask_1_remove_red-square.png"], names
    assert png_size(out / "edited.png") == png_size(out / "input.png") == (128, 128)
    assert "ledits_edit_sdxl" in proc.stderr and "30/30" in proc.stderr       # SD3: negative unconnected
    assert proc.stdout.split() == [str(out / n) for n in ("input.png", "edited.png", "mask_1_remove_red-square.png")]
    summary, verdict = proc.stderr.strip().splitlines()[-2:]
    assert summary.startswith(f"ledits_edit: install check OK: ComfyUI {comfy_host['version']} loaded the "
                              "pack's 7 nodes, inverted and edited a 128x128 image in 30 steps"), summary
    assert summary.endswith("(trained tiny SD3, bench/quality/models/sd3_seed0)"), summary
    assert verdict.startswith("ledits_edit: removed the red square: yes (its region is now 100% grey wall"), verdict
    print("\n" + summary + "\n" + verdict)


def test_runs_with_the_tiny_builtin_model(comfy_host, tmp_path):
    """The install check without kept models (a Registry install: bench/ does not ship; here an empty
    LEDITS_KEPT_MODELS): the random model, 4 steps at 128 px, one summary line, a NOTE that it is noise."""
    out = tmp_path / "out"
    (tmp_path / "no_models").mkdir()
    proc = run_tool(["--out", out], cwd=tmp_path, comfyui=comfy_host["root"],
                    LEDITS_KEPT_MODELS=tmp_path / "no_models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM-WEIGHT" in proc.stderr and "noise" in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edited.png", "mask_1_add_glasses.png", "mask_2_remove_cat.png"], names
    assert png_size(out / "edited.png") == (128, 96)
    assert png_size(out / "mask_1_add_glasses.png") == (128, 96)
    assert "LEDITS++ Guided Edit" in proc.stderr and "4/4" in proc.stderr       # progress
    assert "nodes_replacements" not in proc.stderr      # 0.33's core nodes load without a server
    assert proc.stdout.split() == [str(out / n) for n in names]
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"ledits_edit: install check OK: ComfyUI {comfy_host['version']} loaded the "
                              "pack's 7 nodes, inverted and edited a 128x96 image in 4 steps"), summary
    print("\n" + summary)


def test_tiny_model_defaults_yield_to_the_users_flags():
    """A photo without --ckpt is scaled to 128 px and run in 4 steps unless --steps/--size say otherwise;
    the trained tiny model runs the node's 30 steps at 128 px; a real checkpoint keeps 30 steps at its
    native size."""
    tool = load_tool()
    defaults = lambda *argv, demo=True, sdxl=False: tool.run_defaults(tool.parse_args(list(argv)), demo, sdxl)
    assert defaults("--image", "photo.png") == (4, 128)
    assert defaults("--steps", "12", "--size", "0") == (12, 0)
    assert defaults("--size", "256") == (4, 256)
    assert tool.run_defaults(tool.parse_args([]), True, True, trained=True) == (30, 128)
    assert tool.run_defaults(tool.parse_args(["--steps", "12"]), True, True, trained=True) == (12, 128)
    assert defaults("--ckpt", "x", demo=False) == (30, 512)
    assert defaults("--ckpt", "x", demo=False, sdxl=True) == (30, 1024)
    from PIL import Image
    assert tool.fit_size(Image.new("RGB", (320, 256)), 128).size == (128, 96)   # the newcomer's photo


def test_runs_with_a_checkpoint_file_and_image(comfy_host, tiny_ckpt, session_dir, tmp_path):
    """A checkpoint given as a path (tiny SDXL layout: the SDXL workflow is picked from the file)."""
    from PIL import Image
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (256, 128), (120, 160, 200)).save(image)
    ckpt = session_dir / "checkpoints" / tiny_ckpt["sdxl"]
    out = tmp_path / "edited"
    proc = run_tool(["--image", image, "--ckpt", ckpt, "--add", "snow", "--add", "sunset", "--remove", "sky",
                     "--steps", 3, "--size", 128, "--out", out, "--tiny-classes"], cwd=tmp_path, comfyui=comfy_host["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ledits_edit_sdxl" in proc.stderr and "RANDOM-WEIGHT" not in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edited.png", "mask_1_add_snow.png", "mask_2_add_sunset.png", "mask_3_remove_sky.png"], names
    assert png_size(out / "edited.png") == (128, 64)        # long side 128 (--size)


def one_error_line(proc, *needles):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ledits_edit: error:"), lines
    for needle in needles:
        assert needle in lines[0], lines
    return lines[0]


def test_errors_are_one_clear_line(comfy_host, tmp_path):
    root = comfy_host["root"]
    if REPO.parent.name != "custom_nodes":                        # else it finds the ComfyUI it sits in
        proc = run_tool(["--out", tmp_path / "o"], cwd=tmp_path)                  # no COMFYUI_PATH
        assert proc.returncode == 2
        one_error_line(proc, "no ComfyUI found", "COMFYUI_PATH")
    proc = run_tool(["--comfyui", tmp_path], cwd=tmp_path)                       # not a ComfyUI folder
    assert proc.returncode == 2
    one_error_line(proc, "no ComfyUI found at")
    good = tmp_path / "ok.png"
    from PIL import Image
    Image.new("RGB", (64, 64)).save(good)
    proc = run_tool(["--image", good, "--ckpt", tmp_path / "missing.safetensors", "--add", "x"], tmp_path, root)
    assert proc.returncode == 2
    one_error_line(proc, "checkpoint not found", "missing.safetensors")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    proc = run_tool(["--image", broken, "--add", "x"], tmp_path, root)
    assert proc.returncode == 2
    one_error_line(proc, "cannot read image", "broken.png")
    proc = run_tool(["--image", tmp_path / "nope.png"], tmp_path, root)
    assert proc.returncode == 2
    one_error_line(proc, "cannot read image", "no such file")
    proc = run_tool(["--image", good, "--ckpt", good], tmp_path, root)          # nothing to edit
    assert proc.returncode == 2
    one_error_line(proc, "--add")


def test_a_failing_workflow_exits_1(comfy_host, tmp_path):
    """Something ComfyUI rejects at run time (a file that is no checkpoint): exit 1, the reason last."""
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    good = tmp_path / "ok.png"
    from PIL import Image
    Image.new("RGB", (64, 64)).save(good)
    proc = run_tool(["--image", good, "--ckpt", fake, "--add", "x", "--steps", 2], tmp_path, comfy_host["root"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ledits_edit: error:") and "CheckpointLoaderSimple" in last, last
