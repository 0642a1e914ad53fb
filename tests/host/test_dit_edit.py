"""Issue #10: LEDITS++ on flow-matching DiTs (tiny random SD3, SD3.5, Flux dev and schnell built from
ComfyUI's own classes): exact reconstruction, node path = core path, joint-attention masks,
composition, guidance semantics."""
import pytest
import torch

from ledits_family_checks import check_scale_reverse_coverage
from ledits_core_path import core_path_edit, record_batch_order
from ledits_node_calls import concepts_for, guided_edit, invert, seeded_latent

DITS = ("sd3", "sd35", "flux", "flux_schnell")


@pytest.fixture(scope="module")
def load_dit(comfy_host):
    cache = {}

    def load(layout):
        if layout not in cache:
            cache[layout] = comfy_host["tiny"].build(layout, seed=0)
        return cache[layout]
    return load


@pytest.fixture(scope="module")
def empty(load_dit, run_node):
    return lambda layout: run_node("CLIPTextEncode", clip=load_dit(layout)[1], text="")[0]


def flow_latent(batch, h, w, seed=0):
    return seeded_latent(batch, 16, h, w, seed=seed)


@pytest.mark.parametrize("steps, size", [(2, (12, 8)), (15, (9, 7))])
@pytest.mark.parametrize("layout", DITS)
def test_reconstruction_guided_edit_and_custom_sampler(load_dit, run_node, empty, layout, steps, size):
    model = load_dit(layout)[0]
    latent = flow_latent(2, *size)
    inversion, noisy, sigmas = invert(run_node, model, latent, steps, empty(layout))
    assert inversion.zs.shape == (steps, 2, 16, *size) and float(sigmas[0]) < 1.0
    edited = guided_edit(run_node, model, inversion)[0]
    err = (edited["samples"] - latent["samples"]).abs().max().item()
    print(f"{layout} steps={steps} latent={size}: GuidedEdit reconstruction max abs error {err:.3g}")
    assert err <= 1e-4

    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=7.5, guidance_rescale=0.0)[0]
    sampler = run_node("LEditsPPSampler", inversion=inversion)[0]
    out = run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider, sampler=sampler,
                   sigmas=sigmas, latent_image=noisy)[0]
    err = (out["samples"] - latent["samples"]).abs().max().item()
    print(f"{layout} steps={steps}: SamplerCustomAdvanced reconstruction max abs error {err:.3g}")
    assert err <= 1e-4


def test_user_sigmas_from_a_flow_scheduler_reconstruct(load_dit, run_node, empty):
    """BasicScheduler on a flow model starts at sigma 1 and ends at 0; both are made exact."""
    model = load_dit("sd3")[0]
    sigmas = run_node("BasicScheduler", model=model, scheduler="simple", steps=8, denoise=1.0)[0]
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    latent = flow_latent(1, 8, 8, seed=4)
    inversion, _, kept = run_node("LEditsPPInversion", model=model, latent=latent, steps=8, skip=0.0, seed=0,
                                  schedule="exact", source_cfg=3.5, negative=empty("sd3"), sigmas=sigmas)
    assert 0.99 < float(kept[0]) < 1.0 and float(kept[-1]) > 0.0
    edited = guided_edit(run_node, model, inversion)[0]
    assert (edited["samples"] - latent["samples"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("layout", ["sd3", "flux"])
def test_node_path_equals_core_path(load_dit, run_node, empty, core, layout):
    """GuidedEdit == ledits_core with the model's own apply_model, batched in the host's chunk order."""
    model, clip, _ = load_dit(layout)
    model, order = record_batch_order(model)
    latent = flow_latent(2, 8, 6, seed=5)
    steps, seed, negative = 5, 11, empty(layout)
    inversion = invert(run_node, model, latent, steps, negative, seed=seed)[0]
    concepts = concepts_for(run_node, clip, [("glasses", 5.0, False, "noise"), ("cat", 3.0, True, "none")])
    order.clear()
    edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
    assert len(order) == steps
    guidance = inversion.base.guidance
    assert (guidance == 3.5) if layout == "flux" else guidance is None

    ours, out = core_path_edit(core, model, latent, inversion, negative, concepts, steps, seed, order[0],
                               core.FLOW, pooled=True, guidance=guidance)
    assert (ours.zs - inversion.zs).abs().max().item() <= 1e-5
    err = (out - edited).abs().max().item()
    print(f"{layout}: node path vs core path max abs difference {err:.3g}")
    assert err <= 1e-5


class RecordingOverride:
    """A foreign optimized_attention_override (another node's): records joint q/k, then attends."""

    def __init__(self):
        self.calls = 0
        self.seen = []

    def __call__(self, func, *args, **kwargs):
        self.calls += 1
        options = kwargs.get("transformer_options") or {}
        if options.get("ledits_pp_block") is not None:
            self.seen.append((options["ledits_pp_block"], list(options.get("cond_or_uncond", [])),
                              args[0].detach().clone(), args[1].detach().clone(), kwargs.get("heads", args[3]
                                                                                          if len(args) > 3 else None),
                              bool(kwargs.get("skip_reshape", False))))
        return func(*args, **kwargs)


@pytest.mark.parametrize("layout", ["sd35", "flux"])
def test_maps_token_grid_sum_to_one_no_extra_call_and_compose(load_dit, run_node, empty, layout):
    """Maps live on the token grid and equal the image queries' mass on the concept's tokens out
    of all keys (text + image: the rest of the mass is exactly the other keys'); a foreign override
    keeps running; one model call per step; the untouched MODEL samples bit-identically after."""
    model, clip, _ = load_dit(layout)
    latent_img = run_node("EmptySD3LatentImage", width=80, height=48, batch_size=1)[0]

    def sample(m):
        return run_node("KSampler", model=m, seed=3, steps=3, cfg=1.0, sampler_name="euler", scheduler="simple",
                        positive=empty(layout), negative=empty(layout), latent_image=latent_img, denoise=1.0)[0]
    before = sample(model)["samples"]

    foreign = RecordingOverride()
    patched = model.clone()
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    calls = []
    patched.set_model_unet_function_wrapper(
        lambda apply_model, args: calls.append(1) or apply_model(args["input"], args["timestep"], **args["c"]))
    latent = flow_latent(2, 10, 6, seed=1)
    steps = 3
    inversion = invert(run_node, patched, latent, steps, empty(layout))[0]
    concept_text = "a red hat"
    concepts = concepts_for(run_node, clip, [(concept_text, 6.0, False, "attention")])
    calls.clear()
    foreign.calls = 0
    foreign.seen.clear()
    _, masks, record = guided_edit(run_node, patched, inversion, concepts)
    assert len(calls) == steps and foreign.calls > 0
    grid = (5, 3)
    for step in record.steps:
        assert step[0][0].shape == (2, *grid)
    assert masks.shape == (2, 80, 48)

    # recompute the last step's map from the q/k the foreign override saw (concept rows = cond index 2)
    spec = concepts[0]
    per_call = len(foreign.seen) // steps                 # labelled attention calls of one model call
    last = foreign.seen[-per_call:]
    total, heads_total = torch.zeros(2, 15), 0
    for block, chunks, q, k, heads, skip_reshape in last:
        if not skip_reshape:
            q = q.reshape(q.shape[0], q.shape[1], heads, -1).transpose(1, 2)
            k = k.reshape(k.shape[0], k.shape[1], heads, -1).transpose(1, 2)
        if k.shape[2] == 15:
            continue                                  # SD3.5's image-only attention
        rows = slice(chunks.index(2) * 2, chunks.index(2) * 2 + 2)
        text = k.shape[2] - 15
        probs = torch.softmax(q[rows, :, text:].float() @ k[rows].float().transpose(-1, -2)
                              * q.shape[-1] ** -0.5, dim=-1)
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5)
        total += probs[..., list(spec.token_positions)].sum(-1).sum(1)
        heads_total += heads
    ours = record.steps[-1][0][0].reshape(2, -1)
    assert torch.allclose(ours, total / heads_total, atol=1e-5)
    assert bool((ours > 0).all()) and bool((ours < 1).all())
    assert torch.equal(sample(model)["samples"], before)


def test_mask_from_attention_equals_core_masks_and_images_are_independent(load_dit, run_node, empty, core):
    model, clip, _ = load_dit("flux")
    a, b = flow_latent(2, 8, 8, seed=1), flow_latent(2, 8, 8, seed=1)
    b["samples"][1] = flow_latent(1, 8, 8, seed=9)["samples"][0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "intersect")])
    runs = []
    for latent in (a, b):
        inversion = invert(run_node, model, latent, 4, empty("flux"))[0]
        runs.append(guided_edit(run_node, model, inversion, concepts))
    assert torch.equal(runs[0][1][0], runs[1][1][0]) and not torch.equal(runs[0][1][1], runs[1][1][1])
    assert torch.allclose(runs[0][0]["samples"][0], runs[1][0]["samples"][0], atol=1e-5)
    record = runs[0][2]
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=0, step=-1, threshold=-1.0,
                          smoothing=True, resolution="latent")
    expected = core.attention_mask(record.steps[-1][0][0], 0.8, (8, 8))[:, 0]
    assert torch.equal(mask, expected) and heat.shape == (2, 64, 64, 3)


def test_scale_reverse_and_mask_coverage(load_dit, run_node, empty):
    model, clip, _ = load_dit("sd3")
    check_scale_reverse_coverage(run_node, model, clip, flow_latent(1, 16, 16, seed=2), empty("sd3"), "sd3",
                                 zero_tolerance=1e-3)


def test_flux_distilled_guidance_is_shared_by_every_prediction(load_dit, run_node, empty):
    model, clip, _ = load_dit("flux")
    model = model.clone()
    seen = []
    model.set_model_unet_function_wrapper(
        lambda apply_model, args: seen.append(args["c"]["guidance"].clone()) or
        apply_model(args["input"], args["timestep"], **args["c"]))
    latent = flow_latent(1, 8, 8, seed=3)
    concepts = concepts_for(run_node, clip, [("a hat", 4.0, False, "intersect")])
    negative = run_node("FluxGuidance", conditioning=empty("flux"), guidance=2.0)[0]
    for value, neg, expected in ((-1.0, empty("flux"), 3.5), (-1.0, negative, 2.0), (5.0, negative, 5.0)):
        seen.clear()
        inversion = invert(run_node, model, latent, 3, neg, flux_guidance=value)[0]
        guided_edit(run_node, model, inversion, concepts)
        assert inversion.base.guidance == expected
        assert seen and all(bool((g == expected).all()) for g in seen), (value, expected)
    schnell = invert(run_node, load_dit("flux_schnell")[0], latent, 3, empty("flux_schnell"), flux_guidance=5.0)[0]
    assert schnell.base.guidance is None


def test_attention_capture_blocks_input(load_dit, run_node, empty):
    model, clip, _ = load_dit("flux")
    latent = flow_latent(1, 8, 8, seed=6)
    inversion = invert(run_node, model, latent, 3, empty("flux"))[0]
    concepts = concepts_for(run_node, clip, [("a cat", 5.0, False, "attention")])
    maps = {}
    for blocks in ("auto", "all", "0", "0-1, 3"):
        captured = run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                            blocks=blocks)[0]
        assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})
        maps[blocks] = guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0]
    assert not torch.allclose(maps["0"], maps["all"])
    for first, last in (("0", "all"), ("all", "0")):     # chained capture nodes: the last one decides
        captured = model
        for blocks in (first, last):
            captured = run_node("LEditsPPAttentionCapture", model=captured, resolution="latent/4",
                                include_middle=False, blocks=blocks)[0]
        chained = guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0]
        assert torch.equal(chained, maps[last])
    for bad in ("99", "x", "3-1"):
        with pytest.raises(ValueError, match="blocks"):
            run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False, blocks=bad)


def test_bad_input_on_dits(load_dit, run_node, empty):
    sd3, sd3_clip, _ = load_dit("sd3")
    flux = load_dit("flux")[0]
    latent = flow_latent(1, 8, 8)
    inversion, noisy, sigmas = invert(run_node, flux, latent, 3, empty("flux"))
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, sd3, inversion)
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, sd3_clip, [("  ", 5.0, False, "intersect")])
    nan = flow_latent(1, 8, 8)
    nan["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, sd3, nan, 3, empty("sd3"))
    with pytest.raises(ValueError, match="CLIP"):
        guided_edit(run_node, flux, inversion, concepts_for(run_node, sd3_clip, [("hat", 5.0, False, "noise")]))
    guider = run_node("LEditsPPGuider", model=flux, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=flow_latent(1, 8, 10))


@pytest.mark.parametrize("kind", ["flux_fill", "sd15_inpaint", "chroma_radiance", "wan"])
def test_unsupported_families_are_refused_by_name(comfy_host, run_node, kind):
    """Flux and SD1.5 inpainting (extra input channels), Chroma Radiance (pixel-space Chroma) and a
    video DiT: the nodes that take a MODEL refuse it and name the families that work."""
    model = comfy_host["tiny"].unsupported_model(kind)
    calls = {"LEditsPPInversion": dict(model=model, latent=flow_latent(1, 8, 8), steps=3, skip=0.0, seed=0,
                                       schedule="exact", source_cfg=3.5),
             "LEditsPPAttentionCapture": dict(model=model, resolution="latent/4", include_middle=False,
                                              blocks="auto")}
    for node, inputs in calls.items():
        with pytest.raises(ValueError, match="not supported") as error:
            run_node(node, **inputs)
        assert "SD3 / SD3.5" in str(error.value) and "Flux.1" in str(error.value), str(error.value)
    assert ("inpainting / fill variant" in str(error.value)) == kind.endswith(("_fill", "_inpaint"))


def test_reference_latents_are_refused(load_dit, run_node, empty):
    """Kontext-style reference images (ReferenceLatent) add image tokens the inverted photo does not
    have: Inversion and the edit refuse such conditioning instead of editing with mismatched predictions."""
    model = load_dit("flux")[0]
    latent = flow_latent(1, 8, 8)
    with_reference = run_node("ReferenceLatent", conditioning=empty("flux"), latent=latent)[0]
    with pytest.raises(ValueError, match="reference images"):
        invert(run_node, model, latent, 3, with_reference)
    inversion = invert(run_node, model, latent, 3, empty("flux"))[0]
    with pytest.raises(ValueError, match="reference images"):
        guided_edit(run_node, model, inversion, negative=with_reference)


def test_auto_blocks_follow_the_measured_rule(comfy_host, load_dit):
    """'auto' = SD3: the last two thirds of the joint blocks; Flux: every double block plus the
    second half of the single blocks (bench/dit_block_study.md), at any model size."""
    import sys
    import types
    families = sys.modules[comfy_host["pack"].__name__ + ".nodes.families"]
    blocks = lambda n: [None] * n
    sd3_24 = types.SimpleNamespace(joint_blocks=blocks(24))
    flux_full = types.SimpleNamespace(double_blocks=blocks(19), single_blocks=blocks(38))
    assert list(families.SD3.default_blocks(sd3_24)) == list(range(8, 24))
    assert list(families.FLUX.default_blocks(flux_full)) == list(range(19)) + list(range(38, 57))
    assert list(families.SD3.default_blocks(load_dit("sd3")[0].model.diffusion_model)) == [1]
    assert list(families.FLUX.default_blocks(load_dit("flux")[0].model.diffusion_model)) == [0, 1, 3]
    sites = families.FLUX.joint_blocks(flux_full)
    assert sites[18] == ("double_block", 18) and sites[19] == ("single_block", 0) and len(sites) == 57


def test_weight_patches_compose(load_dit, run_node, empty):
    """A LoRA-style weight patch on a Flux clone: inversion and replay on the patched clone stay
    exact, and the patch changes the edit (it is applied, not bypassed)."""
    model, clip, _ = load_dit("flux")
    patched = model.clone()
    key = next(k for k in patched.model.state_dict() if k.endswith("img_in.weight"))
    patched.add_patches({key: (torch.full_like(patched.model.state_dict()[key], 1e-2),)}, 1.0)
    latent = flow_latent(1, 8, 8, seed=12)
    concepts = concepts_for(run_node, clip, [("a hat", 5.0, False, "intersect")])
    results = {}
    for name, m in (("plain", model), ("patched", patched)):
        inversion = invert(run_node, m, latent, 4, empty("flux"))[0]
        recon = guided_edit(run_node, m, inversion)[0]["samples"]
        assert (recon - latent["samples"]).abs().max().item() <= 1e-4, name
        results[name] = guided_edit(run_node, m, inversion, concepts)[0]["samples"]
    assert not torch.allclose(results["plain"], results["patched"])
