"""Chroma (comfy.model_base.Chroma, both hosts) through every node of the pack, on a tiny random
Chroma built from ComfyUI's own classes (tools/tiny_families/chroma.py): exact reconstruction,
node path = core path (batched and separate calls: T5 text is not padded, so conds of different
lengths run as separate model calls), joint-attention maps and masks, scale / reverse / coverage,
concept token positions against the host's T5 tokenizer, guidance semantics, blocks, bad input.

The helpers above the tests are shared with tests/host/test_family_flux2.py."""
import pytest
import torch

from ledits_core_path import core_path_edit, record_batch_order
from ledits_family_checks import check_reconstruction, check_scale_reverse_coverage, check_user_sigmas
from ledits_node_calls import concepts_for, guided_edit, invert, seeded_latent
from test_dit_edit import RecordingOverride

LAYOUT = "chroma"


def latent_of(channels, batch, h, w, seed=0):
    return seeded_latent(batch, channels, h, w, seed=seed)


def core_path_per_cond(core, model, latent, inversion, negative, concepts, steps, seed, **extra):
    """ledits_core on the model's own apply_model with one call per cond, as the host runs conds
    whose text lengths differ; `extra` are apply_model's other inputs, one value per row."""
    import comfy.model_management
    comfy.model_management.load_models_gpu([model])
    base = model.model
    x0 = base.process_latent_in(latent["samples"].clone())
    contexts = [negative[0][0]] + [concept.conditioning[0][0] for concept in concepts]

    def predict(x, sigma, context):
        rows = {name: torch.full((x.shape[0],), value) for name, value in extra.items()}
        with torch.inference_mode():
            return base.apply_model(x, sigma.expand(x.shape[0]), c_crossattn=context.repeat(x.shape[0], 1, 1),
                                    **rows).float()
    noise = core.draw_inversion_noise(x0.shape, steps, seed)
    ours = core.invert(lambda x, s, i: predict(x, s, contexts[0]), x0, inversion.sigmas, noise, form=core.FLOW)

    def edit(x, s, i):
        uncond = predict(x, s, contexts[0])
        preds = [predict(x, s, context) for context in contexts[1:]]
        return core.apply_edit_guidance(uncond, uncond, preds, [c.params for c in concepts], i)[0]
    return ours, base.process_latent_out(core.replay(edit, ours.x_T, inversion.sigmas, ours.zs, form=core.FLOW))


def check_maps(run_node, model, clip, latent, negative, concept_text, model_positions, grid, separate_calls,
               sample):
    """Maps on the token grid equal the image queries' mass on the concept's tokens (at the
    positions the model sees them) out of all keys; a foreign override still runs; one model call
    per step, two when the negative and the concept differ in length in the model (`separate_calls`);
    the untouched MODEL samples bit-identically afterwards. `grid`: the image tokens (h, w) of the
    latent (patch 2: Chroma; patch 1: Flux.2)."""
    before = sample(model)["samples"]
    foreign = RecordingOverride()
    patched = model.clone()
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    calls = []
    patched.set_model_unet_function_wrapper(
        lambda apply_model, args: calls.append(list(args["cond_or_uncond"])) or
        apply_model(args["input"], args["timestep"], **args["c"]))
    steps, batch = 3, latent["samples"].shape[0]
    inversion = invert(run_node, patched, latent, steps, negative)[0]
    concepts = concepts_for(run_node, clip, [(concept_text, 6.0, False, "attention")])
    calls.clear()
    foreign.calls = 0
    _, masks, record = guided_edit(run_node, patched, inversion, concepts)
    assert len(calls) == steps * (2 if separate_calls else 1) and foreign.calls > 0
    assert all(step[0][0].shape == (batch, *grid) for step in record.steps)
    assert masks.shape[0] == batch
    labelled = [entry for entry in foreign.seen if 2 in entry[1]]
    per_call = len(labelled) // steps
    total, heads_total = torch.zeros(batch, grid[0] * grid[1]), 0
    for _, chunks, q, k, heads, skip_reshape in labelled[-per_call:]:
        assert skip_reshape
        rows = slice(chunks.index(2) * batch, (chunks.index(2) + 1) * batch)
        text = k.shape[2] - grid[0] * grid[1]
        probs = torch.softmax(q[rows, :, text:].float() @ k[rows].float().transpose(-1, -2) * q.shape[-1] ** -0.5, -1)
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5)
        total += probs[..., list(model_positions)].sum(-1).sum(1)
        heads_total += heads
    ours = record.steps[-1][0][0].reshape(batch, -1)
    assert torch.allclose(ours, total / heads_total, atol=1e-5)
    assert bool((ours > 0).all()) and bool((ours < 1).all())
    assert torch.equal(sample(model)["samples"], before)


def check_masks_and_independence(run_node, core, model, clip, channels, negative):
    """Masks from the attention record equal ledits_core's masks bit for bit; image 0 of a batch
    edits the same whatever image 1 is."""
    a, b = latent_of(channels, 2, 8, 8, seed=1), latent_of(channels, 2, 8, 8, seed=1)
    b["samples"][1] = latent_of(channels, 1, 8, 8, seed=9)["samples"][0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "intersect")])
    runs = [guided_edit(run_node, model, invert(run_node, model, x, 4, negative)[0], concepts) for x in (a, b)]
    assert torch.equal(runs[0][1][0], runs[1][1][0]) and not torch.equal(runs[0][1][1], runs[1][1][1])
    assert torch.allclose(runs[0][0]["samples"][0], runs[1][0]["samples"][0], atol=1e-5)
    record = runs[0][2]
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=0, step=-1, threshold=-1.0,
                          smoothing=True, resolution="latent")
    assert torch.equal(mask, core.attention_mask(record.steps[-1][0][0], 0.8, (8, 8))[:, 0])


def check_blocks_input(run_node, model, clip, latent, negative):
    inversion = invert(run_node, model, latent, 3, negative)[0]
    concepts = concepts_for(run_node, clip, [("a cat", 5.0, False, "attention")])
    maps = {}
    for blocks in ("auto", "all", "0", "0-1, 3"):
        captured = run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                            blocks=blocks)[0]
        assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})
        maps[blocks] = guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0]
    assert not torch.allclose(maps["0"], maps["all"])
    assert torch.equal(maps["auto"], maps["0-1, 3"])            # tiny: 2 double + 2 single blocks
    for bad in ("99", "x", "3-1"):
        with pytest.raises(ValueError, match="blocks"):
            run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False, blocks=bad)


def pack_families(comfy_host):
    import sys
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.families"]


# --- Chroma ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chroma(comfy_host):
    return comfy_host["tiny"].build(LAYOUT, seed=0)


@pytest.fixture(scope="module")
def empty(chroma, run_node):
    return run_node("CLIPTextEncode", clip=chroma[1], text="")[0]


def chroma_latent(batch, h, w, seed=0):
    return latent_of(16, batch, h, w, seed)


@pytest.mark.parametrize("steps, size", [(2, (7, 5)), (15, (9, 7))])
def test_reconstruction(chroma, run_node, steps, size):
    """Unconnected negative (one zero token) and the empty prompt (EOS alone)."""
    check_reconstruction(run_node, chroma[0], chroma_latent(2, *size), steps, None, "chroma, zero negative")
    check_reconstruction(run_node, chroma[0], chroma_latent(2, *size), steps,
                         run_node("CLIPTextEncode", clip=chroma[1], text="")[0], "chroma, empty prompt")


def test_user_sigmas_from_the_templates_scheduler(chroma, run_node, empty):
    """The Chroma templates' beta scheduler (BasicScheduler on the model's own sampling)."""
    sigmas = run_node("BasicScheduler", model=chroma[0], scheduler="beta", steps=8, denoise=1.0)[0]
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    check_user_sigmas(run_node, chroma[0], chroma_latent(1, 8, 6, seed=4), empty, sigmas)


def test_node_path_equals_core_path_batched_and_separate_calls(chroma, run_node, core):
    """Conds of one length share a call (one batch in the host's order); a negative of another
    length (the unconnected one-token zero negative) runs as its own call."""
    model, clip, _ = chroma
    model, order = record_batch_order(model)
    latent, steps, seed = chroma_latent(2, 8, 6, seed=5), 5, 11
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "noise"), ("a cat", 3.0, True, "none")])
    lengths = {c.context_length for c in concepts}
    same = run_node("CLIPTextEncode", clip=clip, text="a car")[0]
    assert len(lengths) == 1 and same[0][0].shape[1] in lengths       # one text length for all conds
    for negative in (same, None):
        inversion = invert(run_node, model, latent, steps, negative, seed=seed)[0]
        assert inversion.base.guidance is None
        order.clear()
        edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
        if negative is None:
            assert inversion.base.negative[0][0].shape == (1, 1, 64) and not any(inversion.base.negative[0][1].values())
            assert len(order) == 2 * steps and sorted(map(tuple, order[:2])) == [(1,), (3, 2)]
            ours, out = core_path_per_cond(core, model, latent, inversion, inversion.base.negative, concepts,
                                           steps, seed, guidance=0.0)
        else:
            assert len(order) == steps
            ours, out = core_path_edit(core, model, latent, inversion, negative, concepts, steps, seed, order[0],
                                       core.FLOW, guidance=0.0)
        assert (ours.zs - inversion.zs).abs().max().item() <= 1e-5
        err = (out - edited).abs().max().item()
        print(f"chroma, {'separate calls' if negative is None else 'one batch'}: node path vs core path "
              f"max abs difference {err:.3g}")
        assert err <= 1e-5


def test_maps_token_grid_sum_to_one_no_extra_call_and_compose(chroma, run_node, empty):
    model, clip, _ = chroma
    latent_img = run_node("EmptySD3LatentImage", width=80, height=48, batch_size=1)[0]

    def sample(m):
        return run_node("KSampler", model=m, seed=3, steps=3, cfg=3.5, sampler_name="euler", scheduler="beta",
                        positive=concepts_for(run_node, clip, [("a cat", 1.0, False, "none")])[0].conditioning,
                        negative=empty, latent_image=latent_img, denoise=1.0)[0]
    text = "a red hat"
    positions = concepts_for(run_node, clip, [(text, 1.0, False, "none")])[0].token_positions
    check_maps(run_node, model, clip, chroma_latent(2, 10, 6, seed=1), empty, text, positions, (5, 3), True, sample)


def test_masks_equal_core_masks_and_images_are_independent(chroma, run_node, core):
    check_masks_and_independence(run_node, core, chroma[0], chroma[1], 16, None)


def test_scale_reverse_and_mask_coverage(chroma, run_node, empty):
    check_scale_reverse_coverage(run_node, chroma[0], chroma[1], chroma_latent(1, 16, 16, seed=2), empty, "chroma")


def test_concept_token_positions_are_the_words_t5_tokens(chroma, run_node):
    """The PixArt T5 tokenizer: no padding, EOS last; the mask reads exactly the words' tokens."""
    clip = chroma[1]
    text = "a photo of a red cat"
    spec = concepts_for(run_node, clip, [(text, 1.0, False, "none")])[0]
    t5 = getattr(clip.tokenizer, clip.tokenizer.clip)                   # the host's T5 tokenizer
    words = t5.tokenizer(text)["input_ids"]                              # EOS last
    tokens = [t for t, *_ in clip.tokenize(text, return_word_ids=True)["t5xxl"][0]]
    assert spec.context_length == len(words) == spec.conditioning[0][0].shape[1] == len(tokens)
    assert list(spec.token_positions) == list(range(len(words) - 1))
    assert [tokens[p] for p in spec.token_positions] == words[:-1]
    print(f"chroma: '{text}' -> {len(words)} T5 tokens, concept positions {list(spec.token_positions)}")


def test_guidance_is_not_distilled_and_the_cond_default_stays(chroma, run_node, empty):
    """Real CFG: no distilled guidance is shared; every prediction gets the `guidance` cond's
    default 0 (it only feeds the modulation approximator), whatever flux_guidance says."""
    model = chroma[0].clone()
    seen = []
    model.set_model_unet_function_wrapper(
        lambda apply_model, args: seen.append(args["c"]["guidance"].clone()) or
        apply_model(args["input"], args["timestep"], **args["c"]))
    concepts = concepts_for(run_node, chroma[1], [("a hat", 4.0, False, "intersect")])
    inversion = invert(run_node, model, chroma_latent(1, 8, 8, seed=3), 3, empty, flux_guidance=5.0)[0]
    guided_edit(run_node, model, inversion, concepts)
    assert inversion.base.guidance is None
    assert seen and all(bool((g == 0).all()) for g in seen)


def test_attention_capture_blocks_input_and_auto_rule(chroma, run_node, empty, comfy_host):
    import types
    families = pack_families(comfy_host)
    full = types.SimpleNamespace(double_blocks=[None] * 19, single_blocks=[None] * 38)
    assert list(families.CHROMA.default_blocks(full)) == list(families.FLUX.default_blocks(full))
    assert families.CHROMA.default_blocks(chroma[0].model.diffusion_model) == [0, 1, 3]
    check_blocks_input(run_node, chroma[0], chroma[1], chroma_latent(1, 8, 8, seed=6), empty)


def test_bad_input_and_reference_images(chroma, run_node, empty, comfy_host):
    model, clip, _ = chroma
    flux, flux_clip, _ = comfy_host["tiny"].build("flux", seed=0)
    latent = chroma_latent(1, 8, 8)
    inversion, noisy, sigmas = invert(run_node, model, latent, 3, empty)
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, flux, inversion)
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, clip, [("  ", 5.0, False, "intersect")])
    nan = chroma_latent(1, 8, 8)
    nan["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, model, nan, 3, empty)
    with pytest.raises(ValueError, match="CLIP"):                   # SD3's CLIPs: 4096 wide
        guided_edit(run_node, model, inversion, concepts_for(
            run_node, comfy_host["tiny"].build("sd3", seed=0)[1], [("hat", 5.0, False, "noise")]))
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=chroma_latent(1, 8, 10))
    with_reference = run_node("ReferenceLatent", conditioning=empty, latent=latent)[0]
    with pytest.raises(ValueError, match="reference images"):
        invert(run_node, model, latent, 3, with_reference)
    assert "Chroma" in pack_families(comfy_host).SUPPORTED
