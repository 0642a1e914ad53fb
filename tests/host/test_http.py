"""The pack in a real ComfyUI server on 127.0.0.1 (the `server` fixture): registration, an edit and a
reconstruction over HTTP with API-format prompts, reported errors, interrupt."""
import json
import time
import uuid

import torch

PACK_NODES = ["LEditsPPInversion", "LEditsPPEditConcept", "LEditsPPAttentionCapture",
              "LEditsPPMaskFromAttention", "LEditsPPGuidedEdit", "LEditsPPGuider", "LEditsPPSampler"]


def write_input_image(server, name="ledits_input.png", size=(64, 48)):
    from PIL import Image
    gen = torch.Generator().manual_seed(0)
    pixels = (torch.rand(size[1], size[0], 3, generator=gen) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(server.base / "input" / name)
    return name


def edit_prompt(ckpt, image, concepts=(("glasses", False), ("cat", True)), steps=4, seed=0, prefix="ledits_http"):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": image}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": ["4", 0], "steps": steps, "skip": 0.15, "seed": seed, "schedule": "exact",
            "source_cfg": 3.5, "negative": ["2", 0]}},
        "8": {"class_type": "LEditsPPGuidedEdit", "inputs": {
            "model": ["1", 0], "inversion": ["5", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix + "_edit"}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": prefix + "_latent"}},
        "12": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": prefix + "_source"}},
    }
    previous = None
    for i, (text, reverse) in enumerate(concepts):
        node = str(20 + i)
        prompt[node] = {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": text, "scale": 5.0, "threshold": 0.9, "reverse": reverse, "warmup": 0,
            "cooldown": 10000, "mask_type": "intersect"}}
        if previous:
            prompt[node]["inputs"]["concepts"] = [previous, 0]
        previous = node
    if previous:
        prompt["8"]["inputs"]["concepts"] = [previous, 0]
        prompt["13"] = {"class_type": "MaskToImage", "inputs": {"mask": ["8", 1]}}
        prompt["14"] = {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": prefix + "_mask"}}
    return prompt


def read_latent(path):
    from safetensors.torch import load_file
    return load_file(str(path))["latent_tensor"]


def test_nodes_registered_and_imported_cleanly(server):
    for node_id in PACK_NODES:
        status, info = server.request(f"/object_info/{node_id}")
        assert status == 200 and node_id in info, f"{node_id} missing from /object_info"
    bad = [line for line in server.log.read_text().splitlines() if "IMPORT FAILED" in line and "LEDITS" in line]
    assert not bad, bad


def test_edit_and_reconstruction_over_http(server, tiny_ckpt):
    image = write_input_image(server)
    entry = server.run(edit_prompt(tiny_ckpt["sd15"], image, prefix="http_edit"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert server.output_file(entry, "10").is_file() and server.output_file(entry, "14").is_file()
    entry = server.run(edit_prompt(tiny_ckpt["sdxl"], image, concepts=(), steps=6, prefix="http_recon"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    edited = read_latent(server.output_file(entry, "11", "latents"))
    source = read_latent(server.output_file(entry, "12", "latents"))
    err = (edited - source).abs().max().item()
    print(f"HTTP reconstruction (tiny SDXL, 6 steps): max abs error {err:.3g}")
    assert err <= 1e-4


def test_error_is_reported_and_server_keeps_serving(server, tiny_ckpt):
    image = write_input_image(server)
    entry = server.run(edit_prompt(tiny_ckpt["sd15"], image, concepts=(("  ", False),), prefix="http_err"))
    assert entry["status"]["status_str"] == "error"
    messages = json.dumps(entry["status"]["messages"])
    assert "LEDITS++ Edit Concept" in messages and "empty" in messages
    entry = server.run(edit_prompt(tiny_ckpt["sd15"], image, seed=7, prefix="http_after_err"))
    assert entry["status"]["status_str"] == "success"


def test_interrupt_then_same_result_as_a_clean_run(server, tiny_ckpt):
    image = write_input_image(server, "ledits_mid.png", size=(128, 128))
    prompt = edit_prompt(tiny_ckpt["sd15"], image, steps=60, seed=21, prefix=f"http_int_{uuid.uuid4().hex[:6]}")
    prompt_id = server.queue(prompt)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it runs, then interrupt mid-way
        queue = server.request("/queue")[1]
        if queue.get("queue_running"):
            time.sleep(0.5)
            break
        time.sleep(0.1)
    server.request("/interrupt", {})
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"]), entry["status"]["messages"]
    first = server.run(prompt)
    assert first["status"]["status_str"] == "success"
    prompt2 = json.loads(json.dumps(prompt))
    for node in ("10", "11", "12", "14"):
        prompt2[node]["inputs"]["filename_prefix"] += "_again"
    prompt2["5"]["inputs"]["seed"] = 22
    server.run(prompt2)  # a different run in between
    prompt2["5"]["inputs"]["seed"] = 21
    second = server.run(prompt2)
    a = read_latent(server.output_file(first, "11", "latents"))
    b = read_latent(server.output_file(second, "11", "latents"))
    assert torch.equal(a, b)
