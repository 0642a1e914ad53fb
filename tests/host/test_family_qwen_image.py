"""Qwen-Image (tools/tiny_families/qwen_image.py: the host's own network, tokenizer, template cut and
WAN 2.1 VAE, tiny): issue #15's family requirements on 5-D latents (B, 16, 1, H, W) -- reconstruction,
node path = core path (separate calls for texts of different lengths), joint-attention maps and masks,
guidance semantics, token positions against the host's tokenizer, blocks, bad input, refusals."""
import dataclasses
import logging
import sys
import types

import pytest
import torch

import ledits_node_calls as node_calls
from ledits_family_checks import check_scale_reverse_coverage
from ledits_core_path import core_path_grouped, record_batch_order
from ledits_node_calls import concepts_for, invert, max_abs, seeded_latent
from test_dit_edit import RecordingOverride

LAYOUT = "qwen_image"
PHRASE = "a photo of a red cat"
TINY_MODULE = "ledits_tools_tiny_families_qwen_image"     # tools/tiny_families/qwen_image.py, as tiny_models loads it


@pytest.fixture(scope="module")
def qwen(comfy_host):
    tiny = comfy_host["tiny"]
    if LAYOUT not in tiny.FAMILY_BUILDERS:
        pytest.skip(f"ComfyUI {comfy_host['version']}: {tiny.SKIPPED_LAYOUTS.get(LAYOUT, 'no tiny Qwen-Image')}")
    return tiny.build(LAYOUT, seed=0)


@pytest.fixture(scope="module")
def families(comfy_host):
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.families"]


@pytest.fixture(scope="module")
def empty(qwen, run_node):
    return run_node("CLIPTextEncode", clip=qwen[1], text="")[0]


def frame_latent(batch, h, w, seed=0):
    return seeded_latent(batch, 16, 1, h, w, seed=seed)


def guided_edit(run_node, model, inversion, concepts=None, cfg=4.0, **extra):
    return node_calls.guided_edit(run_node, model, inversion, concepts, cfg=cfg, **extra)


@pytest.mark.parametrize("steps, size, negative", [(2, (9, 6), "zero"), (15, (7, 5), "empty prompt")])
def test_reconstruction_guided_edit_and_custom_sampler(qwen, run_node, empty, comfy_host, steps, size, negative):
    model = qwen[0]
    latent = frame_latent(2, *size)
    inversion, noisy, sigmas = invert(run_node, model, latent, steps, None if negative == "zero" else empty)
    assert inversion.zs.shape == (steps, 2, 16, 1, *size) and float(sigmas[0]) < 1.0
    edited = guided_edit(run_node, model, inversion)[0]["samples"]
    err = max_abs(edited, latent["samples"])
    print(f"ComfyUI {comfy_host['version']} qwen_image steps={steps} latent={size} negative={negative}: "
          f"GuidedEdit reconstruction max abs error {err:.3g}")
    assert edited.shape == latent["samples"].shape and err <= 1e-4

    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=4.0, guidance_rescale=0.0)[0]
    out = run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                   sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas, latent_image=noisy)[0]
    err = max_abs(out["samples"], latent["samples"])
    print(f"ComfyUI {comfy_host['version']} qwen_image steps={steps}: SamplerCustomAdvanced max abs error {err:.3g}")
    assert err <= 1e-4


def test_zero_negative_is_an_empty_prompt_long_and_4d_latents_get_their_frame_axis(qwen, run_node, empty, caplog):
    model = qwen[0]
    with caplog.at_level(logging.WARNING, logger="ledits_pp"):
        zero = invert(run_node, model, frame_latent(1, 6, 6), 2)[0].base.negative[0][0]
    assert zero.shape == empty[0][0].shape == (1, 5, 64) and not zero.any()
    assert "Connect CLIP Text Encode with an empty text as `negative`" in caplog.text   # zeros edit badly here
    caplog.clear()
    flat = {"samples": frame_latent(1, 8, 6, seed=3)["samples"][:, :, 0]}       # (B, C, H, W), as EmptyLatentImage
    inversion, _, sigmas = invert(run_node, model, flat, 3, empty)
    assert inversion.latent_shape == (1, 16, 1, 8, 6)
    batched = invert(run_node, model, flat, 3, empty, batch_steps=3)[0]
    for inverted in (inversion, batched):
        assert max_abs(guided_edit(run_node, model, inverted)[0]["samples"], flat["samples"][:, :, None]) <= 1e-4
    scheduled = run_node("BasicScheduler", model=model, scheduler="simple", steps=6, denoise=1.0)[0]
    inversion, _, kept = run_node("LEditsPPInversion", model=model, latent=flat, steps=6, skip=0.0, seed=0,
                                  schedule="exact", source_cfg=3.5, negative=empty, sigmas=scheduled)
    assert 0.99 < float(kept[0]) < 1.0 and float(kept[-1]) > 0.0
    assert max_abs(guided_edit(run_node, model, inversion)[0]["samples"], flat["samples"][:, :, None]) <= 1e-4
    assert "`negative` is unconnected" not in caplog.text


def test_node_path_equals_core_path(qwen, run_node, empty, core, comfy_host):
    """The host's calls: the empty negative (5 tokens) alone, the two 7-token concepts together, the
    8-token one alone (texts of different lengths never share a call)."""
    model, clip, _ = qwen
    model, order = record_batch_order(model)
    latent, steps, seed = frame_latent(2, 8, 6, seed=5), 5, 11
    inversion = invert(run_node, model, latent, steps, empty, seed=seed)[0]
    concepts = concepts_for(run_node, clip, [("glasses", 5.0, False, "noise"), ("a cat", 3.0, True, "none"),
                                             ("a red hat", 4.0, False, "noise")])
    order.clear()
    edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
    calls = order[:len(order) // steps]
    assert len(order) == 3 * steps and sorted(sorted(c) for c in calls) == [[1], [2, 3], [4]]
    ours, out = core_path_grouped(core, model, latent, inversion, empty, concepts, seed, calls)
    assert max_abs(ours.zs, inversion.zs) <= 1e-5
    err = max_abs(out, edited)
    print(f"ComfyUI {comfy_host['version']} qwen_image: node path vs core path max abs difference {err:.3g}")
    assert err <= 1e-5


def test_concept_token_positions_are_the_words_in_the_context(qwen, run_node, families):
    """'a photo of a red cat' in the host's tokenizer and template cut: the six word tokens lead the
    context, the template's 5-token tail follows; the causal text encoder changes no row before a
    changed word, so the positions are the rows of those words in the conditioning."""
    clip = qwen[1]
    tokens = clip.tokenize(PHRASE, return_word_ids=True)
    ids = [int(t[0]) for t in tokens["qwen25_7b"][0]]
    assert {t[2] for t in tokens["qwen25_7b"][0]} == {1}          # word ids cannot tell words from template
    positions, length = families.concept_layout(clip, tokens)
    start = len(ids) - length
    decode = clip.tokenizer.qwen25_7b.tokenizer.decode
    assert positions == list(range(6)) and length == 11
    assert decode([ids[start + p] for p in positions]) == PHRASE
    assert decode(ids[start + 6:]) == "<|im_end|>\n<|im_start|>assistant\n"
    assert "Describe the image" in decode(ids[:start])
    spec = concepts_for(run_node, clip, [(PHRASE, 5.0, False, "intersect")])[0]
    assert spec.token_positions == tuple(positions) and spec.context_length == 11
    red, blue = (run_node("CLIPTextEncode", clip=clip, text=PHRASE.replace("red", color))[0][0][0]
                 for color in ("red", "blue"))
    assert red.shape == blue.shape == (1, 11, 64) and torch.equal(red, spec.conditioning[0][0])
    assert torch.equal(red[:, :4], blue[:, :4]) and not torch.equal(red[:, 4], blue[:, 4])
    assert families.concept_layout(clip, clip.tokenize("cat", return_word_ids=True)) == ([0], 6)


class MaskRecordingOverride(RecordingOverride):
    """RecordingOverride that also keeps the attention mask of each labelled call (5th positional)."""
    def __init__(self):
        super().__init__()
        self.masks = []

    def __call__(self, func, *args, **kwargs):
        if (kwargs.get("transformer_options") or {}).get("ledits_pp_block") is not None:
            self.masks.append(args[4] if len(args) > 4 else kwargs.get("mask"))
        return super().__call__(func, *args, **kwargs)


def test_maps_token_grid_mass_one_no_extra_call_and_compose(qwen, run_node, empty):
    """Maps on the token grid equal the image queries' mass on the concept's tokens out of all keys
    (recomputed from the q/k -- and, on 0.33, the positional text mask -- a foreign override saw);
    the capture adds no model call; the untouched MODEL samples bit-identically afterwards."""
    model, clip, _ = qwen
    start = run_node("EmptyLatentImage", width=48, height=32, batch_size=1)[0]
    positive = run_node("CLIPTextEncode", clip=clip, text=PHRASE)[0]

    def sample(m):
        return run_node("KSampler", model=m, seed=3, steps=3, cfg=2.5, sampler_name="euler", scheduler="simple",
                        positive=positive, negative=empty, latent_image=start, denoise=1.0)[0]["samples"]
    before = sample(model)
    foreign = MaskRecordingOverride()
    patched = model.clone()
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    calls = []
    patched.set_model_unet_function_wrapper(
        lambda apply_model, args: calls.append(1) or apply_model(args["input"], args["timestep"], **args["c"]))
    latent, steps = frame_latent(2, 10, 6, seed=1), 3
    inversion = invert(run_node, patched, latent, steps, empty)[0]
    spec = concepts_for(run_node, clip, [("a red hat", 6.0, False, "attention")])[0]
    text_mask = (torch.arange(spec.context_length) < spec.context_length - 1).long()[None]   # 0.33: 5th positional
    spec = dataclasses.replace(spec, conditioning=[[spec.conditioning[0][0], {"attention_mask": text_mask}]])
    counts = {}
    for mask_type in ("noise", "attention"):
        concept = dataclasses.replace(spec, params=dataclasses.replace(spec.params, mask_type=mask_type))
        calls.clear(), foreign.seen.clear(), foreign.masks.clear()
        _, masks, record = guided_edit(run_node, patched, inversion, (concept,))
        counts[mask_type] = len(calls)
    assert counts["attention"] == counts["noise"] == 2 * steps and foreign.calls > 0
    assert all(step[0][0].shape == (2, 5, 3) for step in record.steps) and masks.shape == (2, 80, 48)
    per_step = len(foreign.seen) // steps
    total, heads_total = torch.zeros(2, 15), 0
    for (block, chunks, q, k, heads, skip_reshape), mask in zip(foreign.seen[-per_step:], foreign.masks[-per_step:]):
        if chunks != [2]:
            continue
        if not skip_reshape:
            q, k = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k))
        logits = q[:, :, -15:].float() @ k.float().transpose(-1, -2) * q.shape[-1] ** -0.5
        if mask is not None:
            logits = logits + mask[:, None].float()
        probs = torch.softmax(logits, dim=-1)
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5)
        total += probs[..., list(spec.token_positions)].sum(-1).sum(1)
        heads_total += heads
    print(f"qwen_image: text mask in attention: {any(m is not None for m in foreign.masks)}")
    ours = record.steps[-1][0][0].reshape(2, -1)
    assert heads_total > 0 and torch.allclose(ours, total / heads_total, atol=1e-5)
    assert bool((ours > 0).all()) and bool((ours < 1).all())
    assert torch.equal(sample(model), before)


def test_mask_from_attention_equals_core_masks_images_independent_and_user_mask(qwen, run_node, empty, core,
                                                                              comfy_host):
    model, clip, _ = qwen
    a, b = frame_latent(2, 8, 8, seed=1), frame_latent(2, 8, 8, seed=1)
    b["samples"][1] = frame_latent(1, 8, 8, seed=9)["samples"][0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "intersect")])
    runs = []
    for latent in (a, b):
        inversion = invert(run_node, model, latent, 4, empty)[0]
        runs.append(guided_edit(run_node, model, inversion, concepts))
    assert runs[0][1].shape == (2, 64, 64)
    assert torch.equal(runs[0][1][0], runs[1][1][0]) and not torch.equal(runs[0][1][1], runs[1][1][1])
    assert max_abs(runs[0][0]["samples"][0], runs[1][0]["samples"][0]) <= 1e-5
    record = runs[0][2]
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=0, step=-1, threshold=-1.0,
                          smoothing=True, resolution="latent")
    assert torch.equal(mask, core.attention_mask(record.steps[-1][0][0], 0.8, (8, 8))[:, 0])
    assert heat.shape == (2, 64, 64, 3)
    ui_outputs = sys.modules[comfy_host["pack"].__name__ + ".nodes.ui_outputs"]   # previews of frame latents
    ui = ui_outputs.guided_edit_ui(model, runs[0][0]["samples"], record, record.final_masks)
    assert len(ui["images"]) == 2 and ui["ledits_pp_steps"][0]["grid"] == [2, 2]      # pooled masks: 8 / 4
    assert ui_outputs.latent_rgb(model, runs[0][0]["samples"]).shape == (2, 8, 8, 3)

    left = torch.zeros(1, 64, 64)
    left[:, :, :32] = 1.0                     # a user MASK (pixels): the concept may act on the left half only
    masked = concepts_for(run_node, clip, [("a dog", 8.0, False, "none")], mask=left)
    inversion = invert(run_node, model, a, 1, empty)[0]      # one step: later steps would spread the edit
    edited = guided_edit(run_node, model, inversion, masked)[0]["samples"]
    assert max_abs(edited[..., 4:], a["samples"][..., 4:]) <= 1e-4 < max_abs(edited[..., :4], a["samples"][..., :4])


def test_scale_reverse_and_mask_coverage(qwen, run_node, empty):
    model, clip, _ = qwen
    check_scale_reverse_coverage(run_node, model, clip, frame_latent(1, 16, 16, seed=2), empty, "qwen_image", cfg=4.0)


def test_attention_capture_blocks_input_and_auto(qwen, run_node, empty, families):
    model, clip, _ = qwen
    inversion = invert(run_node, model, frame_latent(1, 8, 8, seed=6), 3, empty)[0]
    concepts = concepts_for(run_node, clip, [("a cat", 5.0, False, "attention")])
    maps = {}
    for blocks in ("auto", "all", "0", "0-3, 5", "2-5"):
        captured = run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                            blocks=blocks)[0]
        assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})
        maps[blocks] = guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0]
    assert torch.equal(maps["auto"], maps["2-5"]) and not torch.allclose(maps["0"], maps["all"])
    assert not torch.allclose(maps["0-3, 5"], maps["all"])
    for bad in ("6", "x", "3-1"):
        with pytest.raises(ValueError, match="blocks"):
            run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False, blocks=bad)
    full = types.SimpleNamespace(transformer_blocks=[None] * 60)
    assert list(families.QWEN_IMAGE.default_blocks(full)) == list(range(20, 60))
    assert families.QWEN_IMAGE.joint_blocks(full)[59] == ("double_block", 59)


def test_bad_input(qwen, run_node, empty, comfy_host):
    model, clip, _ = qwen
    sd3, sd3_clip, _ = comfy_host["tiny"].build("sd3", seed=0)
    latent = frame_latent(1, 8, 8)
    inversion, noisy, sigmas = invert(run_node, model, latent, 3, empty)
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, sd3, inversion)
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, clip, [("  ", 5.0, False, "intersect")])
    nan = frame_latent(1, 8, 8)
    nan["samples"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, model, nan, 3, empty)
    with pytest.raises(ValueError, match=r"single images.*\(1, 16, 2, 8, 8\)"):
        invert(run_node, model, {"samples": torch.randn(1, 16, 2, 8, 8)}, 3, empty)
    with pytest.raises(ValueError, match="CLIP"):
        guided_edit(run_node, model, inversion, concepts_for(run_node, sd3_clip, [("hat", 5.0, False, "noise")]))
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=frame_latent(1, 8, 10))


def refusal_of(run_node, variant):
    """The errors of the nodes that take a MODEL, for a refused variant."""
    errors = []
    for node, inputs in {"LEditsPPInversion": dict(latent=frame_latent(1, 8, 8), steps=3, skip=0.0, seed=0,
                                                   schedule="exact", source_cfg=3.5),
                         "LEditsPPAttentionCapture": dict(resolution="latent/4", include_middle=False,
                                                          blocks="auto")}.items():
        with pytest.raises(ValueError, match="not supported") as error:
            run_node(node, model=variant, **inputs)
        errors.append(str(error.value))
        assert "Qwen-Image" in errors[-1].split("LEDITS++ runs on")[1]
    return errors


def test_plain_model_fill_variant_and_reference_images(qwen, run_node, empty, families, comfy_host):
    """Plain Qwen-Image: 64 input channels are its patchified 16, not a fill variant; a wider input is;
    reference images (Qwen-Image-Edit, ReferenceLatent) are refused through the conditioning."""
    model = qwen[0]
    assert families.family_of(model) is families.QWEN_IMAGE
    assert families.QWEN_IMAGE.unsupported_variant(model.model.diffusion_model) is None
    tiny = sys.modules[TINY_MODULE]
    wide = comfy_host["tiny"].dit.bare_model(tiny.TinyQwenImage, dict(tiny.UNET, in_channels=128))
    for error in refusal_of(run_node, wide):
        assert "inpainting / fill variant of Qwen-Image (128 input channels" in error
    latent = frame_latent(1, 8, 8)
    with_reference = run_node("ReferenceLatent", conditioning=empty, latent=latent)[0]
    with pytest.raises(ValueError, match="reference images.*Qwen-Image-Edit"):
        invert(run_node, model, latent, 3, with_reference)
    inversion = invert(run_node, model, latent, 3, empty)[0]
    with pytest.raises(ValueError, match="reference images"):
        guided_edit(run_node, model, inversion, negative=with_reference)


def test_layered_is_refused_by_name(qwen, run_node, comfy_host):
    layered = sys.modules[TINY_MODULE].layered_model()
    if layered is None:
        pytest.skip(f"ComfyUI {comfy_host['version']} has no Qwen-Image-Layered (its QwenImageTransformer2DModel "
                    "takes no use_additional_t_cond)")
    for error in refusal_of(run_node, layered):
        assert "Qwen-Image-Layered" in error and "fill" not in error


def test_masks_of_frame_latents_in_the_core(core, comfy_host):
    """The 5-D pieces stay general for T > 1: M2 per frame with one quantile per image over all of
    its frames, M1 and user masks repeated over frames, one MASK image per frame."""
    previews = sys.modules[comfy_host["pack"].__name__ + ".nodes.previews"]
    psi = torch.randn(2, 16, 3, 6, 4, generator=torch.Generator().manual_seed(0))
    m2 = core.noise_mask(psi, 0.75)
    assert m2.shape == (2, 1, 3, 6, 4) and [float(m2[b].mean()) for b in range(2)] == [0.25, 0.25]
    assert torch.equal(core.noise_mask(psi[:, :, :1], 0.75)[:, :, 0], core.noise_mask(psi[:, :, 0], 0.75))
    attention = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(1))
    user = core.with_frames(torch.rand(2, 1, 6, 4), psi)
    concepts = [core.EditConcept(threshold=0.75, mask_type="attention", user_mask=user),
                core.EditConcept(threshold=0.75, mask_type="intersect")]
    guided, masks = core.apply_edit_guidance(torch.zeros_like(psi), torch.zeros_like(psi), [psi, psi], concepts, 0,
                                             [attention, attention])
    assert guided.shape == psi.shape and all(m.shape == (2, 1, 3, 6, 4) for m in masks)
    assert all(torch.equal(masks[0][:, :, t], core.attention_mask(attention, 0.75, (6, 4))) for t in range(3))
    assert torch.equal(masks[1], masks[0] * m2)
    pixels = previews.mask_to_pixels(torch.cat(masks), (6, 4))
    assert pixels.shape == (12, 48, 32)       # concept-major, then image, then frame
    assert torch.equal(pixels[4], previews.mask_to_pixels(masks[0][1:2, :, 1], (6, 4))[0])
