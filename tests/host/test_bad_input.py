"""Issue #3 behaviour 6: bad input gives a clear error naming the node and the fix, and the
host keeps serving the next prompt."""
import pytest
import torch

from ledits_server_harness import edit_api_prompt as base_prompt


def error_text(errors):
    return " ".join(str(e.get("exception_message", e)) if isinstance(e, dict) else str(e) for e in errors)


@pytest.fixture
def expect_failure_then_recover(run_prompt, tiny_ckpt):
    counter = {"seed": 1000}

    def check(prompt, *fragments):
        _, errors = run_prompt(prompt, expect_error=True)
        assert errors, "the prompt should have failed"
        text = error_text(errors if isinstance(errors, list) else [errors])
        for fragment in fragments:
            assert fragment in text, f"{fragment!r} not in error: {text}"
        counter["seed"] += 1
        outputs, _ = run_prompt(base_prompt(tiny_ckpt["sd15"], seed=counter["seed"]))
        assert "7" in outputs
        return text
    return check


def test_unet_with_flow_sampling_is_refused(expect_failure_then_recover, tiny_ckpt):
    """A UNet patched to flow sampling is neither a UNet family member (eps/v) nor a DiT."""
    prompt = base_prompt(tiny_ckpt["sd15"])
    prompt["8"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 3.0}}
    prompt["4"]["inputs"]["model"] = ["8", 0]
    expect_failure_then_recover(prompt, "LEDITS++ Inversion", "not supported yet")


def test_inversion_from_another_model(expect_failure_then_recover, tiny_ckpt):
    prompt = base_prompt(tiny_ckpt["sd15"], edit_ckpt=tiny_ckpt["sd2v"])
    expect_failure_then_recover(prompt, "LEDITS++ Guided Edit", "another model")


def test_empty_concept_text(expect_failure_then_recover, tiny_ckpt):
    expect_failure_then_recover(base_prompt(tiny_ckpt["sd15"], concept="   "), "LEDITS++ Edit Concept", "empty")


def test_concept_from_another_clip(expect_failure_then_recover, tiny_ckpt):
    prompt = base_prompt(tiny_ckpt["sd15"])
    prompt["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_ckpt["sdxl"]}}
    prompt["5"]["inputs"]["clip"] = ["9", 1]
    expect_failure_then_recover(prompt, "LEDITS++ Guided Edit", "same checkpoint")


def test_too_short_sigmas(expect_failure_then_recover, tiny_ckpt):
    prompt = base_prompt(tiny_ckpt["sd15"])
    prompt["10"] = {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 4,
                                                              "denoise": 1.0}}
    prompt["11"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["10", 0], "step": 4}}
    prompt["4"]["inputs"]["sigmas"] = ["11", 1]
    expect_failure_then_recover(prompt, "LEDITS++ Inversion", "at least 2")


def test_zero_steps_fail_validation(run_prompt, tiny_ckpt):
    _, valid = run_prompt(base_prompt(tiny_ckpt["sd15"], steps=0), expect_error=True)
    assert "4" in valid[3] and "steps" in str(valid[3]["4"])


def custom_sampler_prompt(ckpt, latent_from="4", sigmas_from=("4", 2)):
    prompt = base_prompt(ckpt)
    prompt.update({
        "20": {"class_type": "LEditsPPGuider", "inputs": {"model": ["1", 0], "inversion": ["4", 0],
                                                         "concepts": ["5", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "21": {"class_type": "LEditsPPSampler", "inputs": {"inversion": ["4", 0]}},
        "22": {"class_type": "DisableNoise", "inputs": {}},
        "23": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["22", 0], "guider": ["20", 0], "sampler": ["21", 0], "sigmas": list(sigmas_from),
            "latent_image": [latent_from, 1] if latent_from == "4" else [latent_from, 0]}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["23", 0], "filename_prefix": "ledits_custom"}},
    })
    del prompt["6"]
    return prompt


def test_custom_sampler_with_other_latent_or_sigmas(expect_failure_then_recover, tiny_ckpt, run_prompt):
    outputs, _ = run_prompt(custom_sampler_prompt(tiny_ckpt["sd15"]))
    assert "7" in outputs
    prompt = custom_sampler_prompt(tiny_ckpt["sd15"], latent_from="30")
    prompt["30"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}}
    expect_failure_then_recover(prompt, "LEDITS++ Sampler", "noisy_latent")
    prompt = custom_sampler_prompt(tiny_ckpt["sd15"], sigmas_from=("31", 0))
    prompt["31"] = {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 3,
                                                              "denoise": 1.0}}
    expect_failure_then_recover(prompt, "LEDITS++ Sampler", "sigmas")


def test_nan_latent_and_long_concept(load_tiny, run_node):
    model, clip, _ = load_tiny("sd15")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    latent["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="LEDITS\\+\\+ Inversion: the latent contains NaN"):
        run_node("LEditsPPInversion", model=model, latent=latent, steps=2, skip=0.1, seed=0, schedule="exact",
                 source_cfg=1.0)
    text = " ".join(["a red and blue striped hat"] * 20)  # about 120 tokens: two CLIP chunks
    concepts = run_node("LEditsPPEditConcept", clip=clip, text=text, scale=5.0, threshold=0.9, reverse=False,
                        warmup=0, cooldown=10000, mask_type="intersect")[0]
    spec = concepts[0]
    assert spec.context_length == 154 and max(spec.token_positions) > 77 and 0 not in spec.token_positions
    inversion = run_node("LEditsPPInversion", model=model, latent={"samples": torch.randn(1, 4, 16, 16)}, steps=2,
                         skip=0.1, seed=0, schedule="exact", source_cfg=1.0)[0]
    edited = run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=concepts, cfg=7.5,
                      guidance_rescale=0.0)
    assert torch.isfinite(edited[0]["samples"]).all() and edited[2].steps[-1][0][0] is not None


def test_user_masks_of_any_size_and_wrong_batch(load_tiny, run_node):
    model, clip, _ = load_tiny("sdxl")
    inversion = run_node("LEditsPPInversion", model=model, latent={"samples": torch.randn(2, 4, 16, 24)}, steps=2,
                         skip=0.1, seed=0, schedule="exact", source_cfg=1.0)[0]
    concept = lambda mask: run_node("LEditsPPEditConcept", clip=clip, text="hat", scale=5.0, threshold=0.7,
                                    reverse=False, warmup=0, cooldown=10000, mask_type="noise", mask=mask)[0]
    left = torch.zeros(1, 77, 50)
    left[..., :25] = 1  # another size than the image: resized to the latent
    edited, masks, _ = run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=concept(left),
                                cfg=7.5, guidance_rescale=0.0)
    assert float(masks[:, :, 100:].max()) == 0.0  # nothing edited where the user mask is 0
    with pytest.raises(ValueError, match="LEDITS\\+\\+ Guided Edit: the mask of concept 'hat' has 3 images"):
        run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=concept(torch.ones(3, 8, 8)),
                 cfg=7.5, guidance_rescale=0.0)
