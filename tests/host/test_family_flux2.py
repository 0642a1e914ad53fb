"""Flux.2 (comfy.model_base.Flux2, ComfyUI 0.33+) through every node of the pack, on tiny random
klein (Qwen3, 512 right-padded tokens, no guidance embedding) and dev (Mistral 3 with a tiny tekken
tokenizer, guidance-distilled; model_base.Flux2 left-pads the context to 512) models built from the
host's own classes (tools/tiny_families/flux2.py). Skipped, with the reason, on hosts without the
class (0.3.64)."""
import dataclasses

import pytest
import torch

from ledits_core_path import core_path_edit, record_batch_order
from ledits_node_calls import concepts_for, guided_edit, invert
from ledits_family_checks import check_reconstruction, check_scale_reverse_coverage, check_user_sigmas
from test_family_chroma import check_blocks_input, check_maps, check_masks_and_independence, latent_of, pack_families

LAYOUTS = ("flux2_klein", "flux2_dev")
CHANNELS = 128


@pytest.fixture(scope="module", autouse=True)
def flux2_host(comfy_host):
    skipped = comfy_host["tiny"].SKIPPED_LAYOUTS
    if "flux2_klein" in skipped:
        pytest.skip(f"ComfyUI {comfy_host['version']}: {skipped['flux2_klein']}")


@pytest.fixture(scope="module")
def load(comfy_host):
    cache = {}

    def get(layout):
        if layout not in cache:
            cache[layout] = comfy_host["tiny"].build(layout, seed=0)
        return cache[layout]
    return get


@pytest.fixture(scope="module")
def empty(load, run_node):
    return lambda layout: run_node("CLIPTextEncode", clip=load(layout)[1], text="")[0]


def flux2_latent(batch, h, w, seed=0):
    return latent_of(CHANNELS, batch, h, w, seed)


def host_context(model, conditioning):
    """The context the model sees for a CONDITIONING: model_base.Flux2's own extra_conds (dev:
    left-padded with zeros to 512)."""
    out = model.model.extra_conds(cross_attn=conditioning[0][0], device=torch.device("cpu"),
                                  noise=torch.zeros(1, CHANNELS, 4, 4))
    return out["c_crossattn"].cond


def model_positions(comfy_host, spec, model):
    """Where the capture reads the concept's tokens in the model's context."""
    request = pack_families(comfy_host).FLUX2.capture_request(
        {2: (spec.token_positions, spec.context_length)}, (4, 4), None, model.model.diffusion_model)
    return request.concepts[2]


@pytest.mark.parametrize("steps, size", [(2, (7, 5)), (15, (9, 7))])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reconstruction(load, run_node, empty, layout, steps, size):
    """Unconnected negative (512 zero tokens; the distilled klein templates' zeroed negative) and
    the empty prompt (klein base's negative; dev at its distilled guidance)."""
    model = load(layout)[0]
    for negative, label in ((None, "zero negative"), (empty(layout), "empty prompt")):
        check_reconstruction(run_node, model, flux2_latent(2, *size), steps, negative, f"{layout}, {label}")


def test_user_sigmas_from_flux2_scheduler(load, run_node, empty):
    """The Flux.2 templates' scheduler (Flux2Scheduler: sigma from steps and image size)."""
    sigmas = run_node("Flux2Scheduler", steps=8, width=128, height=96)[0]
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    for layout in LAYOUTS:
        check_user_sigmas(run_node, load(layout)[0], flux2_latent(1, 8, 6, seed=4), empty(layout), sigmas)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_node_path_equals_core_path(load, run_node, empty, core, layout):
    """Every cond is 512 tokens in the model (klein by its tokenizer, dev by model_base's left
    padding), so the host batches them in one call; the core path gets the host's contexts."""
    model, clip, _ = load(layout)
    model, order = record_batch_order(model)
    latent, steps, seed, negative = flux2_latent(2, 8, 6, seed=5), 5, 11, empty(layout)
    inversion = invert(run_node, model, latent, steps, negative, seed=seed)[0]
    concepts = concepts_for(run_node, clip, [("glasses", 5.0, False, "noise"), ("a red cat", 3.0, True, "none")])
    order.clear()
    edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
    assert len(order) == steps
    guidance = inversion.base.guidance
    assert (guidance == 3.5) if layout == "flux2_dev" else guidance is None

    def padded(conditioning):
        return [[host_context(model, conditioning), conditioning[0][1]]]
    lengths = {host_context(model, c.conditioning).shape[1] for c in concepts}
    assert lengths == {512}
    concepts = [dataclasses.replace(c, conditioning=padded(c.conditioning)) for c in concepts]
    ours, out = core_path_edit(core, model, latent, inversion, padded(negative), concepts, steps, seed, order[0],
                               core.FLOW, guidance=guidance)
    assert (ours.zs - inversion.zs).abs().max().item() <= 1e-5
    err = (out - edited).abs().max().item()
    print(f"{layout}: node path vs core path max abs difference {err:.3g}")
    assert err <= 1e-5


@pytest.mark.parametrize("layout", LAYOUTS)
def test_maps_token_grid_sum_to_one_no_extra_call_and_compose(load, run_node, empty, comfy_host, layout):
    """dev: the maps read the concept's tokens behind the left padding (512 - length + position)."""
    model, clip, _ = load(layout)
    latent_img = run_node("EmptyFlux2LatentImage", width=96, height=160, batch_size=1)[0]

    def sample(m):
        return run_node("KSampler", model=m, seed=3, steps=3, cfg=1.0, sampler_name="euler", scheduler="simple",
                        positive=empty(layout), negative=empty(layout), latent_image=latent_img, denoise=1.0)[0]
    text = "a red hat"
    spec = concepts_for(run_node, clip, [(text, 1.0, False, "none")])[0]
    positions, length = model_positions(comfy_host, spec, model)
    assert length == 512
    if layout == "flux2_dev":
        assert spec.context_length < 512 and positions == [512 - spec.context_length + p for p in spec.token_positions]
    check_maps(run_node, model, clip, flux2_latent(2, 10, 6, seed=1), empty(layout), text, positions, (10, 6),
               False, sample)


def test_masks_equal_core_masks_and_images_are_independent(load, run_node, core):
    check_masks_and_independence(run_node, core, *load("flux2_klein")[:2], CHANNELS, None)


def test_scale_reverse_and_mask_coverage(load, run_node, empty):
    model, clip, _ = load("flux2_klein")
    check_scale_reverse_coverage(run_node, model, clip, flux2_latent(1, 8, 8, seed=2), empty("flux2_klein"),
                                 "flux2_klein")


@pytest.mark.parametrize("layout", ["flux2_klein", "flux2_klein_9b", "flux2_dev"])
def test_concept_token_positions_are_the_prompt_tokens(load, run_node, comfy_host, layout):
    """Chat template and padding excluded: the positions hold exactly the host tokenizer's tokens
    of the words (klein: from index 3; dev: after the system prompt and [INST]), and in the model's
    context (dev: left-padded by the host) the same rows hold the same features."""
    model, clip = load(layout)[:2]
    (key, _), = clip.tokenize("").items()
    words_tokenizer = getattr(clip.tokenizer, key).tokenizer            # the host's Qwen2 / tekken BPE
    for text in ("a photo of a red cat", "a red cat"):
        spec = concepts_for(run_node, clip, [(text, 1.0, False, "none")])[0]
        tokens = [t for chunk in clip.tokenize(text, return_word_ids=True)[key] for t, *_ in chunk]
        words = words_tokenizer(text)["input_ids"]
        assert [tokens[p] for p in spec.token_positions] == words
        assert list(spec.token_positions) == list(range(spec.token_positions[0], spec.token_positions[0] + len(words)))
        if layout.startswith("flux2_klein"):
            assert spec.token_positions[0] == 3 and spec.context_length == 512
        cond = spec.conditioning[0][0]
        positions, length = model_positions(comfy_host, spec, model)
        if layout != "flux2_klein_9b":
            context = host_context(model, spec.conditioning)
            assert context.shape[1] == length == 512
            assert torch.equal(context[0, positions], cond[0, list(spec.token_positions)])
        print(f"{layout}: '{text}' -> {spec.context_length} tokens, positions {list(spec.token_positions)}, "
              f"in the model's context {positions}")


def test_distilled_guidance_dev_only(load, run_node, empty):
    """dev: one distilled guidance for every prediction (flux_guidance, else FluxGuidance on the
    conditioning, else 3.5); klein has no guidance embedding (real CFG / cfg 1)."""
    model, clip, _ = load("flux2_dev")
    model = model.clone()
    seen = []
    model.set_model_unet_function_wrapper(
        lambda apply_model, args: seen.append(args["c"]["guidance"].clone()) or
        apply_model(args["input"], args["timestep"], **args["c"]))
    latent = flux2_latent(1, 8, 8, seed=3)
    concepts = concepts_for(run_node, clip, [("a hat", 4.0, False, "intersect")])
    negative = run_node("FluxGuidance", conditioning=empty("flux2_dev"), guidance=4.0)[0]
    for value, neg, expected in ((-1.0, None, 3.5), (-1.0, negative, 4.0), (5.0, negative, 5.0)):
        seen.clear()
        inversion = invert(run_node, model, latent, 3, neg, flux_guidance=value)[0]
        guided_edit(run_node, model, inversion, concepts)
        assert inversion.base.guidance == expected
        assert seen and all(bool((g == expected).all()) for g in seen), (value, expected)
    klein = invert(run_node, load("flux2_klein")[0], latent, 3, None, flux_guidance=5.0)[0]
    assert klein.base.guidance is None and klein.base.negative[0][0].shape == (1, 512, 96)


def test_attention_capture_blocks_input_and_auto_rule(load, run_node, empty, comfy_host):
    import types
    families = pack_families(comfy_host)
    dev = types.SimpleNamespace(double_blocks=[None] * 8, single_blocks=[None] * 48)
    assert list(families.FLUX2.default_blocks(dev)) == list(range(8)) + list(range(32, 56))
    assert families.FLUX2.default_blocks(load("flux2_klein")[0].model.diffusion_model) == [0, 1, 3]
    model, clip, _ = load("flux2_klein")
    check_blocks_input(run_node, model, clip, flux2_latent(1, 8, 8, seed=6), empty("flux2_klein"))


def test_bad_input_and_reference_images_are_refused(load, run_node, empty, comfy_host):
    model, clip, _ = load("flux2_klein")
    latent = flux2_latent(1, 8, 8)
    inversion, noisy, sigmas = invert(run_node, model, latent, 3, empty("flux2_klein"))
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, load("flux2_dev")[0], inversion)
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, clip, [("  ", 5.0, False, "intersect")])
    nan = flux2_latent(1, 8, 8)
    nan["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, model, nan, 3, empty("flux2_klein"))
    with pytest.raises(ValueError, match="CLIP"):                   # Chroma's T5: 64 wide, not 96
        guided_edit(run_node, model, inversion, concepts_for(
            run_node, comfy_host["tiny"].build("chroma", seed=0)[1], [("hat", 5.0, False, "noise")]))
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=flux2_latent(1, 8, 10))
    reference = run_node("ReferenceLatent", conditioning=empty("flux2_klein"), latent=latent)[0]   # Flux.2 editing
    with pytest.raises(ValueError, match="reference images"):
        invert(run_node, model, latent, 3, reference)
    with pytest.raises(ValueError, match="reference images"):
        guided_edit(run_node, model, inversion, negative=reference)
    assert "Flux.2" in pack_families(comfy_host).SUPPORTED
