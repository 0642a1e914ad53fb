"""Z-Image (Turbo, base; ComfyUI 0.33+) and Lumina 2 (both hosts) on tiny NextDiTs built from
ComfyUI's own classes (tools/tiny_families/lumina2.py): the family requirements of issue #15 --
exact reconstruction, node path = core path with the host's separate calls for texts of different
lengths, joint-attention maps placed by call order (no block patches; refiner calls never counted),
Z-Image's padded token streams, masks, guidance semantics, the concept's token positions against
the host's tokenizer, capture blocks, an 8-step Turbo-style edit, bad input and refusals."""
import sys
import types

import pytest
import torch

import ledits_node_calls as node_calls
from ledits_family_checks import check_scale_reverse_coverage
from ledits_core_path import core_path_grouped, record_batch_order
from ledits_node_calls import CallRecorder, concepts_for, invert, max_abs, seeded_latent

LAYOUTS = ("zimage", "lumina2")
PHRASE = "a photo of a red cat"
LAYERS = 3                                     # main layers of the tiny models (1 refiner layer each)


@pytest.fixture(scope="module")
def load(comfy_host):
    tiny, cache = comfy_host["tiny"], {}

    def get(layout):
        if layout not in tiny.FAMILY_BUILDERS:
            pytest.skip(f"ComfyUI {comfy_host['version']}: {tiny.SKIPPED_LAYOUTS.get(layout, 'no tiny ' + layout)}")
        if layout not in cache:
            cache[layout] = tiny.build(layout, seed=0)
        return cache[layout]
    return get


@pytest.fixture(scope="module")
def families(comfy_host):
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.families"]


@pytest.fixture(scope="module")
def empty(load, run_node):
    return lambda layout: run_node("CLIPTextEncode", clip=load(layout)[1], text="")[0]


def flow_latent(batch, h, w, seed=0):
    return seeded_latent(batch, 16, h, w, seed=seed)


def guided_edit(run_node, model, inversion, concepts=None, cfg=4.0, **extra):
    return node_calls.guided_edit(run_node, model, inversion, concepts, cfg=cfg, **extra)


def joint_length(layout, text, image):
    """[text; image] in the main layers: Z-Image pads each stream to a multiple of 32."""
    pad = (lambda n: -(-n // 32) * 32) if layout == "zimage" else (lambda n: n)
    return pad(text) + pad(image)


@pytest.mark.parametrize("steps, size, negative", [(2, (9, 7), "zero"), (15, (11, 5), "empty prompt")])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reconstruction_guided_edit_and_custom_sampler(load, run_node, empty, comfy_host, layout, steps, size,
                                                       negative):
    model = load(layout)[0]
    latent = flow_latent(2, *size)
    inversion, noisy, sigmas = invert(run_node, model, latent, steps, None if negative == "zero" else empty(layout))
    assert inversion.zs.shape == (steps, 2, 16, *size) and float(sigmas[0]) < 1.0
    err = max_abs(guided_edit(run_node, model, inversion)[0]["samples"], latent["samples"])
    print(f"ComfyUI {comfy_host['version']} {layout} steps={steps} latent={size} negative={negative}: "
          f"GuidedEdit reconstruction max abs error {err:.3g}")
    assert err <= 1e-4
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=4.0, guidance_rescale=0.0)[0]
    out = run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                   sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas, latent_image=noisy)[0]
    err = max_abs(out["samples"], latent["samples"])
    print(f"ComfyUI {comfy_host['version']} {layout} steps={steps}: SamplerCustomAdvanced max abs error {err:.3g}")
    assert err <= 1e-4


@pytest.mark.parametrize("layout", LAYOUTS)
def test_user_sigmas_and_the_zero_negative(load, run_node, empty, layout):
    """BasicScheduler's flow schedule (1 .. 0) is made exact; the unconditional without a
    `negative` is zeros as long as the host's encoding of "" (ConditioningZeroOut of it)."""
    model = load(layout)[0]
    sigmas = run_node("BasicScheduler", model=model, scheduler="simple", steps=6, denoise=1.0)[0]
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    latent = flow_latent(1, 8, 6, seed=4)
    inversion, _, kept = run_node("LEditsPPInversion", model=model, latent=latent, steps=6, skip=0.0, seed=0,
                                  schedule="exact", source_cfg=3.5, sigmas=sigmas)
    assert 0.99 < float(kept[0]) < 1.0 and float(kept[-1]) > 0.0
    assert max_abs(guided_edit(run_node, model, inversion)[0]["samples"], latent["samples"]) <= 1e-4
    zero, extras = inversion.base.negative[0]
    zeroed = run_node("ConditioningZeroOut", conditioning=empty(layout))[0][0][0]
    assert zero.shape == zeroed.shape == (1, {"zimage": 8, "lumina2": 1}[layout], zero.shape[-1])
    assert not zero.any() and not zeroed.any() and int(extras["attention_mask"].sum()) == zero.shape[1]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_node_path_equals_core_path(load, run_node, core, comfy_host, layout):
    """The zero negative and two concepts of other text lengths: three separate calls per step."""
    model, clip, _ = load(layout)
    model, order = record_batch_order(model)
    latent, steps, seed = flow_latent(2, 8, 6, seed=5), 5, 11
    inversion = invert(run_node, model, latent, steps, seed=seed)[0]
    concepts = concepts_for(run_node, clip, [("glasses", 5.0, False, "noise"), ("a red cat", 3.0, True, "none")])
    order.clear()
    edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
    calls = order[:len(order) // steps]
    assert len(order) == 3 * steps and sorted(map(tuple, calls)) == [(1,), (2,), (3,)]
    ours, out = core_path_grouped(core, model, latent, inversion, inversion.base.negative, concepts, seed, calls,
                                  model_inputs=lambda context: {"num_tokens": context.shape[1]})
    assert max_abs(ours.zs, inversion.zs) <= 1e-5
    err = max_abs(out, edited)
    print(f"ComfyUI {comfy_host['version']} {layout}: node path vs core path max abs difference {err:.3g}")
    assert err <= 1e-5


@pytest.mark.parametrize("layout", LAYOUTS)
def test_concept_token_positions_are_the_words_in_the_context(load, run_node, families, layout):
    """'a photo of a red cat' in the host's tokenizer: Z-Image the words between the chat template's
    3-token head and 5-token tail (word ids cannot tell them apart), Lumina 2 every token after BOS;
    the causal text encoder changes no row before a changed word (up to float round-off of
    sequences of other lengths)."""
    clip = load(layout)[1]
    tokens = clip.tokenize(PHRASE, return_word_ids=True)
    (key, (chunk,)), = tokens.items()
    ids = [int(t[0]) for t in chunk]
    positions, length = families.concept_layout(clip, tokens)
    words = [ids[p] for p in positions]
    if layout == "zimage":
        decode = clip.tokenizer.qwen3_4b.tokenizer.decode
        assert {t[2] for t in chunk} == {1} and length == len(ids)
        assert positions == list(range(3, len(ids) - 5)) and decode(words) == PHRASE
        assert decode(ids[:3]) == "<|im_start|>user\n" and decode(ids[-5:]) == "<|im_end|>\n<|im_start|>assistant\n"
    else:
        spiece = clip.tokenizer.gemma2_2b.tokenizer.tokenizer          # the SentencePiece processor
        assert ids[0] == spiece.bos_id() and positions == list(range(1, len(ids))) and length == len(ids)
        assert words == spiece.encode(PHRASE, add_bos=False) and spiece.decode(words) == PHRASE
    spec = concepts_for(run_node, clip, [(PHRASE, 5.0, False, "intersect")])[0]
    assert spec.token_positions == tuple(positions) and spec.context_length == length
    other = PHRASE.replace("red", "blue")
    first = next(p for p, (a, b) in enumerate(zip(ids, clip.tokenize(other)[key][0])) if a != b[0])
    red = spec.conditioning[0][0]
    blue = concepts_for(run_node, clip, [(other, 5.0, False, "intersect")])[0].conditioning[0][0]
    assert first in positions and torch.allclose(red[:, :first], blue[:, :first], atol=1e-5)
    assert max_abs(red[:, first], blue[:, first]) > 1e-2


@pytest.mark.parametrize("layout", LAYOUTS)
def test_maps_token_grid_mass_one_no_extra_call_and_compose(load, run_node, empty, comfy_host, layout):
    """Maps on the real token grid equal the image queries' mass on the concept's tokens out of all
    keys (pads included, as the model normalises), recomputed from the q/k a foreign override saw in
    the auto blocks (every main layer; the refiner calls come first and are not counted); the capture
    adds no model call; the untouched MODEL samples bit-identically afterwards."""
    model, clip, _ = load(layout)
    start = run_node("EmptySD3LatentImage", width=80, height=48, batch_size=1)[0]
    positive = run_node("CLIPTextEncode", clip=clip, text=PHRASE)[0]

    def sample(m):
        return run_node("KSampler", model=m, seed=3, steps=3, cfg=2.0, sampler_name="euler", scheduler="simple",
                        positive=positive, negative=empty(layout), latent_image=start, denoise=1.0)[0]["samples"]
    before = sample(model)
    foreign, calls = CallRecorder(), []
    patched = model.clone()
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    patched.set_model_unet_function_wrapper(
        lambda apply_model, args: calls.append(1) or apply_model(args["input"], args["timestep"], **args["c"]))
    latent, steps, grid = flow_latent(2, 10, 6, seed=1), 3, (5, 3)
    inversion = invert(run_node, patched, latent, steps)[0]
    counts = {}
    for mask_type in ("noise", "attention"):
        spec = concepts_for(run_node, clip, [("a red hat", 6.0, False, mask_type)])[0]
        calls.clear(), foreign.seen.clear()
        _, masks, record = guided_edit(run_node, patched, inversion, (spec,))
        counts[mask_type] = len(calls)
    assert counts["attention"] == counts["noise"] == 2 * steps
    assert all(step[0][0].shape == (2, *grid) for step in record.steps) and masks.shape == (2, 80, 48)
    length = joint_length(layout, spec.context_length, 15)
    text_padded = length - joint_length(layout, 0, 15)
    joint = [(q, k, heads) for chunks, q, k, heads in foreign.seen if chunks == [2] and q.shape[2] == length]
    assert len(joint) == steps * LAYERS
    total, heads_total = torch.zeros(2, 15), 0
    for q, k, heads in joint[-LAYERS:]:                            # the last step, auto = every main layer
        probs = torch.softmax(q[:, :, text_padded:text_padded + 15].float() @ k.float().transpose(-1, -2)
                              * q.shape[-1] ** -0.5, dim=-1)
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5)
        total += probs[..., list(spec.token_positions)].sum(-1).sum(1)
        heads_total += heads
    ours = record.steps[-1][0][0].reshape(2, -1)
    print(f"ComfyUI {comfy_host['version']} {layout}: joint length {length} (text {spec.context_length} -> "
          f"{text_padded}, image 15), map vs recomputed max abs {max_abs(ours, total / heads_total):.3g}")
    assert torch.allclose(ours, total / heads_total, atol=1e-5)
    assert bool((ours > 0).all()) and bool((ours < 1).all())
    assert torch.equal(sample(model), before)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mask_from_attention_equals_core_masks_and_images_are_independent(load, run_node, core, layout):
    model, clip, _ = load(layout)
    a, b = flow_latent(2, 8, 8, seed=1), flow_latent(2, 8, 8, seed=1)
    b["samples"][1] = flow_latent(1, 8, 8, seed=9)["samples"][0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "intersect")])
    runs = [guided_edit(run_node, model, invert(run_node, model, x, 4)[0], concepts) for x in (a, b)]
    assert torch.equal(runs[0][1][0], runs[1][1][0]) and not torch.equal(runs[0][1][1], runs[1][1][1])
    assert torch.allclose(runs[0][0]["samples"][0], runs[1][0]["samples"][0], atol=1e-5)
    record = runs[0][2]
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=0, step=-1, threshold=-1.0,
                          smoothing=True, resolution="latent")
    assert torch.equal(mask, core.attention_mask(record.steps[-1][0][0], 0.8, (8, 8))[:, 0])
    assert heat.shape == (2, 64, 64, 3)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_scale_reverse_and_mask_coverage(load, run_node, comfy_host, layout):
    model, clip, _ = load(layout)
    check_scale_reverse_coverage(run_node, model, clip, flow_latent(1, 16, 16, seed=2), None,
                                 f"ComfyUI {comfy_host['version']} {layout}", cfg=4.0)


def test_turbo_style_edit_at_8_steps_with_default_settings(load, run_node, comfy_host):
    """Z-Image Turbo's use: 8 steps, cfg 1, no negative (the zero unconditional). With the nodes'
    defaults (skip 0.15, warmup 0, scale 5, threshold 0.9, intersect) the edit moves the latent
    measurably while no concept reconstructs it."""
    model, clip, _ = load("zimage")
    latent = flow_latent(1, 16, 12, seed=8)
    inversion = run_node("LEditsPPInversion", model=model, latent=latent, steps=8, skip=0.15, seed=0,
                         schedule="exact", source_cfg=3.5)[0]
    assert inversion.steps == 8
    assert max_abs(guided_edit(run_node, model, inversion, cfg=1.0)[0]["samples"], latent["samples"]) <= 1e-4
    concepts = run_node("LEditsPPEditConcept", clip=clip, text="a red hat", scale=5.0, threshold=0.9, reverse=False,
                        warmup=0, cooldown=10000, mask_type="intersect")[0]
    edited, masks, _ = guided_edit(run_node, model, inversion, concepts, cfg=1.0)
    change = (edited["samples"] - latent["samples"]).norm().item() / latent["samples"].norm().item()
    coverage = masks.float().mean().item()
    print(f"ComfyUI {comfy_host['version']} zimage 8 steps, defaults: relative latent change {change:.4f}, "
          f"max abs {max_abs(edited['samples'], latent['samples']):.4f}, final mask coverage {coverage:.3f}")
    assert change > 0.01 and 0 < coverage < 0.5


@pytest.mark.parametrize("layout", LAYOUTS)
def test_attention_capture_blocks_input(load, run_node, layout):
    """Blocks count the main layers only (3 here: refiners are never captured); 'auto' = all (0-2)."""
    model, clip, _ = load(layout)
    inversion = invert(run_node, model, flow_latent(1, 8, 8, seed=6), 3)[0]
    concepts = concepts_for(run_node, clip, [("a cat", 5.0, False, "attention")])
    maps = {}
    for blocks in ("auto", "1-2", "all", "0", "0-1, 2"):
        captured = run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                            blocks=blocks)[0]
        assert "wrappers" not in model.model_options.get("transformer_options", {})
        maps[blocks] = guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0]
    assert torch.equal(maps["auto"], maps["all"]) and torch.equal(maps["all"], maps["0-1, 2"])
    assert not torch.allclose(maps["0"], maps["all"]) and not torch.allclose(maps["1-2"], maps["all"])
    for first, last in (("0", "all"), ("all", "0")):     # chained capture nodes: the last one decides
        captured = model
        for blocks in (first, last):
            captured = run_node("LEditsPPAttentionCapture", model=captured, resolution="latent/4",
                                include_middle=False, blocks=blocks)[0]
        assert torch.equal(guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0], maps[last])
    for bad in (str(LAYERS), "x", "2-1"):
        with pytest.raises(ValueError, match="blocks"):
            run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False, blocks=bad)


def test_auto_blocks_are_every_main_layer(families):
    network = lambda n: types.SimpleNamespace(layers=[None] * n)
    assert list(families.LUMINA2.default_blocks(network(30))) == list(range(30))    # Z-Image
    assert list(families.LUMINA2.default_blocks(network(26))) == list(range(26))    # Lumina 2
    assert list(families.LUMINA2.default_blocks(network(LAYERS))) == [0, 1, 2]


def test_bad_input(load, run_node, comfy_host):
    model, clip, _ = load("lumina2")
    latent = flow_latent(1, 8, 8)
    inversion, noisy, sigmas = invert(run_node, model, latent, 3)
    other = comfy_host["tiny"].build("lumina2", seed=1)[0]
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, other, inversion)
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, clip, [("  ", 5.0, False, "intersect")])
    nan = flow_latent(1, 8, 8)
    nan["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, model, nan, 3)
    sd3_clip = comfy_host["tiny"].build("sd3", seed=0)[1]
    with pytest.raises(ValueError, match="CLIP"):
        guided_edit(run_node, model, inversion, concepts_for(run_node, sd3_clip, [("hat", 5.0, False, "noise")]))
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=flow_latent(1, 8, 10))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reference_images_and_the_pixel_space_variant_are_refused(load, run_node, empty, comfy_host, layout):
    """Reference latents (Z-Image Omni editing, ReferenceLatent) are refused; so is Z-Image's
    pixel-space variant (0.33), by name, with the supported families listed."""
    model = load(layout)[0]
    latent = flow_latent(1, 8, 8)
    with_reference = run_node("ReferenceLatent", conditioning=empty(layout), latent=latent)[0]
    with pytest.raises(ValueError, match="reference images"):
        invert(run_node, model, latent, 3, with_reference)
    import comfy.supported_models as supported
    if layout == "lumina2" or not hasattr(supported, "ZImagePixelSpace"):
        return
    dit = sys.modules["ledits_tools_tiny_dit_models"]
    tiny = sys.modules["ledits_tools_tiny_families_lumina2"]
    config = dict(tiny.UNETS["zimage"], image_model="zimage_pixel", in_channels=3, decoder_hidden_size=32,
                  decoder_num_res_blocks=1, decoder_in_channels=12, n_layers=1)
    pixel = dit.bare_model(supported.ZImagePixelSpace, config)
    with pytest.raises(ValueError, match="pixel-space variant") as error:
        invert(run_node, pixel, {"samples": torch.randn(1, 3, 16, 16)}, 3)
    assert "Lumina 2" in str(error.value) and "SD3 / SD3.5" in str(error.value), str(error.value)
