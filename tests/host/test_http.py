"""The pack in a real ComfyUI server on 127.0.0.1 (the `server` fixture): registration, an edit and a
reconstruction over HTTP with API-format prompts, reported errors (interrupts: test_reliability)."""
import json

from ledits_server_harness import prompt_for, read_latent, write_image

PACK_NODES = ["LEditsPPInversion", "LEditsPPEditConcept", "LEditsPPAttentionCapture",
              "LEditsPPMaskFromAttention", "LEditsPPGuidedEdit", "LEditsPPGuider", "LEditsPPSampler"]


def edit_prompt(ckpt, image, concepts=(("glasses", False), ("cat", True)), steps=4, seed=0, prefix="ledits_http"):
    """The shared edit prompt (11: edited latent, 12: source latent) plus a decoded image (10) and
    the first concept's mask (14) saved as PNGs."""
    prompt = prompt_for(ckpt, image, concepts=concepts, steps=steps, seed=seed, prefix=prefix)
    prompt["9"] = {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}}
    prompt["10"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": prefix + "_image"}}
    if concepts:
        prompt["13"] = {"class_type": "MaskToImage", "inputs": {"mask": ["8", 1]}}
        prompt["14"] = {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": prefix + "_mask"}}
    return prompt


def test_nodes_registered_and_imported_cleanly(server):
    for node_id in PACK_NODES:
        status, info = server.request(f"/object_info/{node_id}")
        assert status == 200 and node_id in info, f"{node_id} missing from /object_info"
    bad = [line for line in server.log.read_text().splitlines() if "IMPORT FAILED" in line and "LEDITS" in line]
    assert not bad, bad


def test_edit_and_reconstruction_over_http(server, tiny_ckpt):
    image = write_image(server, "ledits_input.png", 64, 48, seed=0)
    entry = server.run(edit_prompt(tiny_ckpt["sd15"], image, prefix="http_edit"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert server.output_file(entry, "10").is_file() and server.output_file(entry, "14").is_file()
    entry = server.run(edit_prompt(tiny_ckpt["sdxl"], image, concepts=(), steps=6, prefix="http_recon"))
    assert entry["status"]["status_str"] == "success", entry["status"]
    edited, source = read_latent(server, entry, "11"), read_latent(server, entry, "12")
    err = (edited - source).abs().max().item()
    print(f"HTTP reconstruction (tiny SDXL, 6 steps): max abs error {err:.3g}")
    assert err <= 1e-4


def test_error_is_reported_and_server_keeps_serving(server, tiny_ckpt):
    image = write_image(server, "ledits_input.png", 64, 48, seed=0)
    entry = server.run(edit_prompt(tiny_ckpt["sd15"], image, concepts=(("  ", False),), prefix="http_err"))
    assert entry["status"]["status_str"] == "error"
    messages = json.dumps(entry["status"]["messages"])
    assert "LEDITS++ Edit Concept" in messages and "empty" in messages
    entry = server.run(edit_prompt(tiny_ckpt["sd15"], image, seed=7, prefix="http_after_err"))
    assert entry["status"]["status_str"] == "success"
