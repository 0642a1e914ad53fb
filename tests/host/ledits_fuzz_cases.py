"""The fuzz table of the reliability suite: every node's inputs at their bounds and with
wrong-but-connectable values, as API prompts built on `prompt_for` (test-only module)."""
from ledits_server_harness import prompt_for


def _edit(prompt, **inputs):
    prompt["8"]["inputs"].update(inputs)
    return prompt


def _concept(prompt, **inputs):
    prompt["20"]["inputs"].update(inputs)
    return prompt


def _inv(prompt, **inputs):
    prompt["5"]["inputs"].update(inputs)
    return prompt


def _many_concepts(ckpt, image, count):
    return prompt_for(ckpt, image, concepts=[(f"concept {i}", bool(i % 2)) for i in range(count)], steps=2)


def _custom(ckpt, image, latent_size=None, inversion=True, sigmas_from_inversion=True):
    prompt = prompt_for(ckpt, image, steps=3)
    del prompt["8"]
    guider_inputs = {"model": ["1", 0], "concepts": ["20", 0], "cfg": 7.5, "guidance_rescale": 0.0}
    if inversion:
        guider_inputs["inversion"] = ["5", 0]
    prompt.update({
        "30": {"class_type": "LEditsPPGuider", "inputs": guider_inputs},
        "31": {"class_type": "LEditsPPSampler", "inputs": {"inversion": ["5", 0]}},
        "32": {"class_type": "DisableNoise", "inputs": {}},
        "33": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["32", 0], "guider": ["30", 0], "sampler": ["31", 0], "sigmas": ["5", 2],
            "latent_image": ["5", 1]}},
    })
    prompt["11"]["inputs"]["samples"] = ["33", 0]
    if latent_size:
        prompt["34"] = {"class_type": "EmptyLatentImage", "inputs": {"width": latent_size[0], "height": latent_size[1],
                                                                     "batch_size": 1}}
        prompt["33"]["inputs"]["latent_image"] = ["34", 0]
    if not sigmas_from_inversion:
        prompt["35"] = {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras",
                                                                  "steps": 3, "denoise": 1.0}}
        prompt["33"]["inputs"]["sigmas"] = ["35", 0]
    return prompt


def _mask_node(prompt, **inputs):
    prompt["40"] = {"class_type": "LEditsPPMaskFromAttention", "inputs": dict(
        {"attention": ["8", 2], "concept": -1, "step": -1, "threshold": -1.0, "smoothing": True,
         "resolution": "image"}, **inputs)}
    prompt["41"] = {"class_type": "SaveImage", "inputs": {"images": ["40", 1], "filename_prefix": "rel_fuzz_heat"}}
    prompt["42"] = {"class_type": "MaskToImage", "inputs": {"mask": ["40", 0]}}
    prompt["43"] = {"class_type": "SaveImage", "inputs": {"images": ["42", 0], "filename_prefix": "rel_fuzz_mask"}}
    return prompt


def _capture(prompt, resolution, include_middle):
    prompt["45"] = {"class_type": "LEditsPPAttentionCapture", "inputs": {
        "model": ["1", 0], "resolution": resolution, "include_middle": include_middle}}
    prompt["5"]["inputs"]["model"] = prompt["8"]["inputs"]["model"] = ["45", 0]
    return prompt


def _user_mask(prompt, width, height, batch=1):
    prompt["46"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width, "height": height}}
    mask = ["46", 0]
    if batch > 1:
        prompt["47"] = {"class_type": "MaskToImage", "inputs": {"mask": mask}}
        prompt["48"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["47", 0], "amount": batch}}
        prompt["49"] = {"class_type": "ImageToMask", "inputs": {"image": ["48", 0], "channel": "red"}}
        mask = ["49", 0]
    prompt["20"]["inputs"]["mask"] = mask
    return prompt


def _other_model_inversion(prompt, ckpt):
    prompt["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
    prompt["8"]["inputs"]["model"] = ["9", 0]
    return prompt


def _source_prompt(prompt, cfg):
    prompt["13"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo", "clip": ["1", 1]}}
    prompt["5"]["inputs"].update(positive=["13", 0], source_cfg=cfg)
    prompt["8"]["inputs"].update(positive=["13", 0], cfg=cfg)
    return prompt


FUZZ = {
    # inversion inputs at their bounds
    "steps_1": lambda c, i: prompt_for(c, i, steps=1),
    "skip_0": lambda c, i: prompt_for(c, i, skip=0.0),
    "skip_0.95": lambda c, i: prompt_for(c, i, skip=0.95, steps=3),
    "seed_max": lambda c, i: prompt_for(c, i, seed=0xFFFFFFFFFFFFFFFF),
    "schedule_diffusers": lambda c, i: _inv(prompt_for(c, i), schedule="diffusers"),
    "batch_steps_64": lambda c, i: prompt_for(c, i, steps=3, batch_steps=64),
    "source_cfg_0": lambda c, i: _source_prompt(prompt_for(c, i), 0.0),
    "source_cfg_30": lambda c, i: _source_prompt(prompt_for(c, i), 30.0),
    "no_negative": lambda c, i: (lambda p: (p["5"]["inputs"].pop("negative"), p)[1])(prompt_for(c, i)),
    "inversion_batch_2": lambda c, i: prompt_for(c, i, batch=2),
    # concept inputs
    "concepts_0": lambda c, i: prompt_for(c, i, concepts=()),
    "concepts_64": lambda c, i: _many_concepts(c, i, 64),
    "threshold_0": lambda c, i: prompt_for(c, i, threshold=0.0),
    "threshold_1": lambda c, i: prompt_for(c, i, threshold=1.0),
    "scale_0": lambda c, i: _concept(prompt_for(c, i), scale=0.0),
    "scale_50": lambda c, i: _concept(prompt_for(c, i), scale=50.0),
    "warmup_after_last_step": lambda c, i: _concept(prompt_for(c, i), warmup=1000),
    "cooldown_0": lambda c, i: _concept(prompt_for(c, i), cooldown=0),
    "mask_type_attention": lambda c, i: prompt_for(c, i, mask_type="attention"),
    "mask_type_noise": lambda c, i: prompt_for(c, i, mask_type="noise"),
    "mask_type_none": lambda c, i: prompt_for(c, i, mask_type="none"),
    "long_text_300_tokens": lambda c, i: prompt_for(c, i, concepts=((" ".join(["cat"] * 300), False),)),
    "weighted_text": lambda c, i: prompt_for(c, i, concepts=(("(glasses:1.5), [hat]", False),)),
    "user_mask_other_size": lambda c, i: _user_mask(prompt_for(c, i), 37, 53),
    "user_mask_other_batch": lambda c, i: _user_mask(prompt_for(c, i, batch=2), 64, 64, batch=3),
    "user_mask_zero": lambda c, i: (lambda p: (p["46"]["inputs"].update(value=0.0), p)[1])(
        _user_mask(prompt_for(c, i), 64, 64)),
    # edit inputs
    "cfg_0_with_target": lambda c, i: _source_prompt(prompt_for(c, i), 0.0),
    "guidance_rescale_1": lambda c, i: _edit(prompt_for(c, i), guidance_rescale=1.0),
    "inversion_from_other_model": lambda c, i: _other_model_inversion(prompt_for(c, i), "tiny_sd2v.safetensors"),
    "inversion_from_sdxl_to_sd15": lambda c, i: _other_model_inversion(prompt_for(c, i), "tiny_sd15.safetensors"),
    # Guider / Sampler
    "custom_sampler": lambda c, i: _custom(c, i),
    "custom_sampler_latent_other_size": lambda c, i: _custom(c, i, latent_size=(128, 64)),
    "custom_sampler_other_sigmas": lambda c, i: _custom(c, i, sigmas_from_inversion=False),
    "guider_without_inversion": lambda c, i: _custom(c, i, inversion=False),
    # attention capture and masks
    "capture_latent/2": lambda c, i: _capture(prompt_for(c, i), "latent/2", False),
    "capture_latent/8_middle": lambda c, i: _capture(prompt_for(c, i), "latent/8", True),
    "capture_latent/4_middle": lambda c, i: _capture(prompt_for(c, i), "latent/4", True),
    "mask_all_concepts": lambda c, i: _mask_node(prompt_for(c, i)),
    "mask_concept_63": lambda c, i: _mask_node(prompt_for(c, i), concept=63),
    "mask_step_1000": lambda c, i: _mask_node(prompt_for(c, i), step=1000),
    "mask_step_0_threshold_0": lambda c, i: _mask_node(prompt_for(c, i), step=0, threshold=0.0),
    "mask_threshold_1_latent": lambda c, i: _mask_node(prompt_for(c, i), threshold=1.0, resolution="latent",
                                                       smoothing=False),
    "mask_without_concepts": lambda c, i: _mask_node(prompt_for(c, i, concepts=())),
    "mask_noise_type": lambda c, i: _mask_node(prompt_for(c, i, mask_type="noise")),
    # values out of range or of the wrong kind (rejected at validation)
    "steps_0": lambda c, i: prompt_for(c, i, steps=0),
    "skip_1": lambda c, i: prompt_for(c, i, skip=1.0),
    "threshold_2": lambda c, i: prompt_for(c, i, threshold=2.0),
    "mask_type_bogus": lambda c, i: prompt_for(c, i, mask_type="bogus"),
    "concepts_from_latent": lambda c, i: _edit(prompt_for(c, i), concepts=["4", 0]),
}
