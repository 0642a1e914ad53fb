"""Issue #3 behaviour: masks equal the core function, per-image masks, capture sites and shapes,
no extra UNet call, composition with other attn2 patches and LoRA-style weight patches."""
import sys

import pytest
import torch


def random_latent(batch, h, w, seed=0):
    return {"samples": torch.randn(batch, 4, h, w, generator=torch.Generator().manual_seed(seed))}


def concept_chain(run_node, clip, specs):
    chain = None
    for text, mask_type in specs:
        chain = run_node("LEditsPPEditConcept", clip=clip, text=text, scale=6.0, threshold=0.8, reverse=False,
                         warmup=0, cooldown=10000, mask_type=mask_type, concepts=chain)[0]
    return chain


def edit(run_node, model, clip, latent, specs, steps=4, seed=0):
    negative = run_node("CLIPTextEncode", clip=clip, text="")[0]
    inversion = run_node("LEditsPPInversion", model=model, latent=latent, steps=steps, skip=0.15, seed=seed,
                         schedule="exact", source_cfg=3.5, negative=negative)[0]
    concepts = concept_chain(run_node, clip, specs)
    return run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=concepts, cfg=7.5,
                    guidance_rescale=0.0)


@pytest.mark.parametrize("layout, size, grid", [("sd15", (32, 24), (8, 6)), ("sdxl", (64, 48), (16, 12)),
                                                ("sd15", (26, 18), (7, 5))])
def test_recorded_maps_and_mask_from_attention(load_tiny, run_node, core, layout, size, grid):
    model, clip, _ = load_tiny(layout)
    latent = random_latent(2, *size)
    edited, masks, record = edit(run_node, model, clip, latent, [("glasses", "intersect"), ("hat", "attention")])
    assert masks.shape == (4, size[0] * 8, size[1] * 8)
    maps = torch.stack([record.steps[-1][c][0] for c in range(2)], dim=1)
    assert maps.shape == (2, 2, *grid)  # (batch, concepts, h/4, w/4)
    for c in range(2):
        got = run_node("LEditsPPMaskFromAttention", attention=record, concept=c, step=-1, threshold=-1.0,
                       smoothing=True, resolution="latent")[0]
        want = core.attention_mask(record.steps[-1][c][0], 0.8, size)[:, 0]
        assert torch.equal(got, want)
    both, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=-1, step=1, threshold=0.5,
                          smoothing=False, resolution="image")
    assert both.shape == (4, size[0] * 8, size[1] * 8) and heat.shape == (4, size[0] * 8, size[1] * 8, 3)
    assert float(heat.min()) >= 0 and float(heat.max()) <= 1


def test_masks_of_one_image_do_not_depend_on_the_other(load_tiny, run_node):
    model, clip, _ = load_tiny("sdxl")
    a = random_latent(2, 32, 32, seed=1)
    b = {"samples": a["samples"].clone()}
    b["samples"][1] = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(99))
    out_a = edit(run_node, model, clip, a, [("a dog", "intersect")])
    out_b = edit(run_node, model, clip, b, [("a dog", "intersect")])
    assert torch.equal(out_a[1][0], out_b[1][0])  # concept 0, image 0
    assert not torch.equal(out_a[1][1], out_b[1][1])
    for step_a, step_b in zip(out_a[2].steps, out_b[2].steps):
        assert torch.equal(step_a[0][0][0], step_b[0][0][0]) and torch.equal(step_a[0][1][0], step_b[0][1][0])
    assert torch.allclose(out_a[0]["samples"][0], out_b[0]["samples"][0], atol=1e-5)


def test_capture_sites_are_found_by_level(load_tiny, comfy_host):
    pack = comfy_host["pack"].__name__
    capture_sites = sys.modules[pack + ".nodes.unet_capture"].capture_sites
    CaptureConfig = sys.modules[pack + ".nodes.capture"].CaptureConfig
    sd15 = load_tiny("sd15")[0].model.diffusion_model
    sdxl = load_tiny("sdxl")[0].model.diffusion_model
    config = CaptureConfig()
    assert capture_sites(sd15, config) == [("input", 7, 0), ("input", 8, 0), ("output", 3, 0),
                                           ("output", 4, 0), ("output", 5, 0)]
    assert capture_sites(sdxl, config) == [("input", 7, 0), ("input", 7, 1), ("input", 8, 0),
                                           ("input", 8, 1)] + [("output", i, j) for i in (0, 1, 2) for j in (0, 1)]
    assert ("middle", 0, 0) in capture_sites(sdxl, CaptureConfig(include_middle=True))
    assert capture_sites(sd15, CaptureConfig(divisor=2))[0] == ("input", 4, 0)


def test_probabilities_sum_to_one_before_selection(load_tiny, run_node, comfy_host):
    """A concept whose 'tokens' are all 77 positions gets a map of exactly 1 everywhere."""
    pack = comfy_host["pack"].__name__
    values = sys.modules[pack + ".nodes.values"]
    model, clip, _ = load_tiny("sd15")
    concepts = concept_chain(run_node, clip, [("glasses", "attention")])
    everything = values.ConceptSpec(text="all", conditioning=concepts[0].conditioning,
                                    token_positions=tuple(range(77)), context_length=77,
                                    params=concepts[0].params)
    negative = run_node("CLIPTextEncode", clip=clip, text="")[0]
    inversion = run_node("LEditsPPInversion", model=model, latent=random_latent(1, 16, 16), steps=3, skip=0.1,
                         seed=0, schedule="exact", source_cfg=1.0, negative=negative)[0]
    record = run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=(everything,), cfg=1.0,
                      guidance_rescale=0.0)[2]
    for step in record.steps:
        assert torch.allclose(step[0][0], torch.ones_like(step[0][0]), atol=1e-5)


def test_capture_adds_no_unet_call_and_composes(load_tiny, run_node):
    """Another pack's attn2 replace patch keeps running inside the edit, a LoRA-style weight patch
    applies, one UNet call per step, and the original MODEL is untouched afterwards."""
    import comfy.ldm.modules.attention as attention
    original, clip, _ = load_tiny("sd15")
    calls = {"foreign": 0, "unet": 0}

    def foreign(q, k, v, extra_options):
        calls["foreign"] += 1
        return attention.optimized_attention(q, k, v, extra_options["n_heads"])

    def count(apply_model, args):
        calls["unet"] += 1
        return apply_model(args["input"], args["timestep"], **args["c"])
    model = original.clone()
    for site in (("input", 7), ("output", 3), ("input", 1)):
        model.set_model_attn2_replace(foreign, site[0], site[1])
    key = next(k for k in model.model.state_dict() if k.endswith("input_blocks.1.0.in_layers.2.weight"))
    model.add_patches({key: (torch.full_like(model.model.state_dict()[key], 1e-3),)}, 1.0)
    model.set_model_unet_function_wrapper(count)

    latent = random_latent(1, 16, 16)
    sample = lambda m, seed: run_node(
        "KSampler", model=m, seed=seed, steps=2, cfg=5.0, sampler_name="euler", scheduler="normal",
        positive=run_node("CLIPTextEncode", clip=clip, text="x")[0],
        negative=run_node("CLIPTextEncode", clip=clip, text="")[0], latent_image=latent, denoise=1.0)[0]["samples"]
    before = sample(original, 3)
    edited, masks, record = edit(run_node, model, clip, latent, [("glasses", "intersect")], steps=4)
    assert calls["unet"] == 8  # 4 inversion + 4 edit calls
    assert calls["foreign"] > 0
    assert record.steps[-1][0][0] is not None
    assert torch.equal(before, sample(original, 3))
    replace = original.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    assert not any(getattr(p, "is_ledits_capture", False) for p in replace.values())


def test_attention_capture_node_wraps_existing_patches(load_tiny, run_node):
    model, clip, _ = load_tiny("sdxl")
    marker = lambda q, k, v, extra: None
    base = model.clone()
    base.set_model_attn2_replace(marker, "input", 7, 0)
    patched = run_node("LEditsPPAttentionCapture", model=base, resolution="latent/4", include_middle=False)[0]
    replace = patched.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert replace[("input", 7, 0)].previous is marker
    assert all(getattr(p, "is_ledits_capture", False) for k, p in replace.items())
    assert base.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 7, 0)] is marker
    edited, masks, record = edit(run_node, run_node("LEditsPPAttentionCapture", model=model,
                                                    resolution="latent/4", include_middle=True)[0],
                                 clip, random_latent(1, 32, 32), [("glasses", "intersect")], steps=3)
    assert record.steps[-1][0][0].shape == (1, 8, 8)


@pytest.mark.parametrize("backend", ["attention_sub_quad", "attention_split", "attention_basic"])
def test_edit_under_every_cpu_attention_backend(load_tiny, run_node, monkeypatch, backend):
    """ComfyUI picks its attention at start-up (sub-quadratic is the CPU default without
    --use-pytorch-cross-attention): capture and edit give the same maps and latent under each."""
    import comfy.ldm.modules.attention as attention
    model, clip, _ = load_tiny("sd15")
    latent = random_latent(1, 24, 16, seed=3)
    reference = edit(run_node, model, clip, latent, [("glasses", "intersect")], steps=3)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return getattr(attention, backend)(*args, **kwargs)
    monkeypatch.setattr(attention, "optimized_attention", counted)
    monkeypatch.setattr(attention, "optimized_attention_masked", counted)
    edited, masks, record = edit(run_node, model, clip, latent, [("glasses", "intersect")], steps=3)
    assert calls, "the backend was not used"
    assert torch.allclose(edited["samples"], reference[0]["samples"], atol=1e-3, rtol=1e-3)
    for got, want in zip(record.steps, reference[2].steps):
        assert torch.allclose(got[0][0], want[0][0], atol=1e-4)
