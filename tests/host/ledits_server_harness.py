"""API-format prompt builders shared by host tests (test-only; reached through conftest's
sys.path entry under this unique module name)."""


def edit_api_prompt(ckpt, concept="glasses", steps=3, seed=0, edit_ckpt=None, width=64, height=64):
    """API-format prompt: tiny checkpoint -> empty latent -> Inversion -> one concept -> Guided Edit
    -> SaveLatent (node ids: 1 loader, 2 empty text, 3 latent, 4 inversion, 5 concept, 6 edit, 7 save)."""
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "4": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": ["3", 0], "steps": steps, "skip": 0.15, "seed": seed,
            "schedule": "exact", "source_cfg": 3.5, "negative": ["2", 0]}},
        "5": {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": concept, "scale": 5.0, "threshold": 0.9, "reverse": False, "warmup": 0,
            "cooldown": 10000, "mask_type": "intersect"}},
        "6": {"class_type": "LEditsPPGuidedEdit", "inputs": {
            "model": ["1", 0], "inversion": ["4", 0], "concepts": ["5", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "ledits_bad_input"}},
    }
    if edit_ckpt:
        prompt["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": edit_ckpt}}
        prompt["6"]["inputs"]["model"] = ["9", 0]
    return prompt
