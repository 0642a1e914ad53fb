"""API-format prompt builders and history readers shared by the HTTP host tests (test-only;
reached through conftest's sys.path entry under this unique module name)."""
import json
import uuid

import torch


def inversion_node(model, latent, steps, seed, negative, skip=0.15):
    return {"class_type": "LEditsPPInversion", "inputs": {
        "model": model, "latent": latent, "steps": steps, "skip": skip, "seed": seed, "schedule": "exact",
        "source_cfg": 3.5, "negative": negative}}


def concept_node(clip, text, reverse=False, threshold=0.9, mask_type="intersect", previous=None):
    node = {"class_type": "LEditsPPEditConcept", "inputs": {
        "clip": clip, "text": text, "scale": 5.0, "threshold": threshold, "reverse": reverse, "warmup": 0,
        "cooldown": 10000, "mask_type": mask_type}}
    if previous:
        node["inputs"]["concepts"] = [previous, 0]
    return node


def edit_node(model, inversion, concepts=None):
    node = {"class_type": "LEditsPPGuidedEdit", "inputs": {
        "model": model, "inversion": inversion, "cfg": 7.5, "guidance_rescale": 0.0}}
    if concepts:
        node["inputs"]["concepts"] = concepts
    return node


def edit_api_prompt(ckpt, concept="glasses", steps=3, seed=0, edit_ckpt=None, width=64, height=64):
    """API-format prompt: tiny checkpoint -> empty latent -> Inversion -> one concept -> Guided Edit
    -> SaveLatent (node ids: 1 loader, 2 empty text, 3 latent, 4 inversion, 5 concept, 6 edit, 7 save)."""
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "4": inversion_node(["1", 0], ["3", 0], steps, seed, ["2", 0]),
        "5": concept_node(["1", 1], concept),
        "6": edit_node(["1", 0], ["4", 0], ["5", 0]),
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "ledits_bad_input"}},
    }
    if edit_ckpt:
        prompt["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": edit_ckpt}}
        prompt["6"]["inputs"]["model"] = ["9", 0]
    return prompt


def write_image(server, name, width, height, seed):
    from PIL import Image
    gen = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=gen) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(server.base / "input" / name)
    return name


def prompt_for(ckpt, image, concepts=(("glasses", False),), steps=4, seed=0, batch=1, prefix=None,
               mask_type="intersect", threshold=0.9, skip=0.15, batch_steps=None):
    """Loader -> LoadImage -> VAEEncode (-> RepeatLatentBatch) -> Inversion -> concepts -> Guided Edit
    -> SaveLatent. Node ids: 1 loader, 2 empty text, 3 image, 4 encode, 5 inversion, 6 batch,
    8 edit, 11 save edit, 12 save source; concepts 20.."""
    prefix = prefix or "rel_" + uuid.uuid4().hex[:8]
    latent = ["4", 0]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": image}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "5": inversion_node(["1", 0], latent, steps, seed, ["2", 0], skip=skip),
        "8": edit_node(["1", 0], ["5", 0]),
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": prefix + "_edit"}},
        "12": {"class_type": "SaveLatent", "inputs": {"samples": latent, "filename_prefix": prefix + "_src"}},
    }
    if batch > 1:
        prompt["6"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["4", 0], "amount": batch}}
        prompt["5"]["inputs"]["latent"] = prompt["12"]["inputs"]["samples"] = ["6", 0]
    if batch_steps is not None:
        prompt["5"]["inputs"]["batch_steps"] = batch_steps
    previous = None
    for i, (text, reverse) in enumerate(concepts):
        node = str(20 + i)
        prompt[node] = concept_node(["1", 1], text, reverse, threshold, mask_type, previous)
        previous = node
    if previous:
        prompt["8"]["inputs"]["concepts"] = [previous, 0]
    return prompt


def read_latent(server, entry, node="11"):
    from safetensors.torch import load_file
    return load_file(str(server.output_file(entry, node, "latents")))["latent_tensor"]


def messages(entry, kind):
    return [data for event, data in entry["status"].get("messages", []) if event == kind]


def cached_nodes(entry):
    return {n for data in messages(entry, "execution_cached") for n in data.get("nodes", [])}


def ok(entry):
    return entry["status"].get("status_str") == "success"


def error_text(entry_or_body):
    """The error text of a failed history entry or a rejected /prompt body."""
    if isinstance(entry_or_body, dict) and "status" in entry_or_body:
        return " ".join(f"[{d.get('node_type')}] {d.get('exception_type')}: {d.get('exception_message')}"
                        for d in messages(entry_or_body, "execution_error"))
    return json.dumps(entry_or_body)


def with_prefix(prompt, prefix):
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        if node["class_type"] in ("SaveLatent", "SaveImage"):
            node["inputs"]["filename_prefix"] = prefix + "_" + node["inputs"]["filename_prefix"].split("_")[-1]
    return prompt
