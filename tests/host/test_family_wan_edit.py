"""Issue #16: LEDITS++ edits of WAN clips (tiny WAN 2.1 / 2.2-5B, tools/tiny_families/wan.py) on
video latents (B, C, frames, h, w): exact reconstruction, node path = core path, per-frame masks =
core masks, frame independence, guidance semantics, capture blocks, bad input."""
import pytest
import torch

from ledits_core_path import record_batch_order
from test_family_wan import (CHANNELS, concepts_for, encode, guided_edit, invert, load_wan,  # noqa: F401 (fixture)
                             max_abs, video_latent)


@pytest.fixture(scope="module")
def empty(load_wan, run_node):
    return lambda layout: encode(run_node, load_wan(layout)[1], "")


@pytest.mark.parametrize("layout, steps, size", [("wan21", 2, (3, 5, 7)), ("wan21", 15, (5, 9, 6)),
                                                 ("wan22", 2, (3, 7, 5)), ("wan22", 15, (5, 4, 6))])
def test_reconstruction_guided_edit_and_custom_sampler(load_wan, run_node, empty, comfy_host, layout, steps, size):
    """Odd frame counts, non-square frames, batch 2; GuidedEdit and Guider + Sampler."""
    model = load_wan(layout)[0]
    latent = video_latent(layout, 2, *size)
    inversion, noisy, sigmas = invert(run_node, model, latent, steps, empty(layout))
    assert inversion.zs.shape == (steps, 2, CHANNELS[layout], *size) and float(sigmas[0]) < 1.0
    edited = guided_edit(run_node, model, inversion)[0]["samples"]
    err = max_abs(edited, latent["samples"])
    print(f"ComfyUI {comfy_host['version']} {layout} steps={steps} latent={size}: GuidedEdit reconstruction "
          f"max abs error {err:.3g}")
    assert edited.shape == latent["samples"].shape and err <= 1e-4
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=5.0, guidance_rescale=0.0)[0]
    out = run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                   sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas, latent_image=noisy)[0]
    err = max_abs(out["samples"], latent["samples"])
    print(f"ComfyUI {comfy_host['version']} {layout} steps={steps}: SamplerCustomAdvanced max abs error {err:.3g}")
    assert err <= 1e-4


def test_user_sigmas_from_the_hosts_scheduler_reconstruct(load_wan, run_node, empty):
    model = load_wan("wan21")[0]
    sigmas = run_node("BasicScheduler", model=model, scheduler="simple", steps=6, denoise=1.0)[0]
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    latent = video_latent("wan21", 1, 3, 6, 8, seed=4)
    inversion, _, kept = run_node("LEditsPPInversion", model=model, latent=latent, steps=6, skip=0.0, seed=0,
                                  schedule="exact", source_cfg=5.0, negative=empty("wan21"), sigmas=sigmas)
    assert 0.99 < float(kept[0]) < 1.0 and float(kept[-1]) > 0.0
    assert max_abs(guided_edit(run_node, model, inversion)[0]["samples"], latent["samples"]) <= 1e-4


def core_path(core, model, latent, inversion, negative, concepts, seed, chunk_order):
    """ledits_core with the model's own apply_model on the video latent, the conds batched in the
    host's order (every WAN text is 512 tokens long: one call per step)."""
    import comfy.model_management
    comfy.model_management.load_models_gpu([model])
    base = model.model
    conds = {1: negative[0][0], **{2 + c: concept.conditioning[0][0] for c, concept in enumerate(concepts)}}

    def predict(x, sigma, indices):
        b, n = x.shape[0], len(indices)
        with torch.inference_mode():
            out = base.apply_model(x.repeat(n, 1, 1, 1, 1), sigma.expand(b * n),
                                   c_crossattn=torch.cat([conds[i].repeat(b, 1, 1) for i in indices])).float()
        return {i: out[j * b:(j + 1) * b] for j, i in enumerate(indices)}

    x0 = base.process_latent_in(latent["samples"].clone())
    noise = core.draw_inversion_noise(x0.shape, inversion.steps, seed)
    ours = core.invert(lambda x, s, i: predict(x, s, [1])[1], x0, inversion.sigmas, noise, form=core.FLOW)
    params = [c.params for c in concepts]

    def edit(x, s, i):
        preds = predict(x, s, chunk_order)
        return core.apply_edit_guidance(preds[1], preds[1], [preds[2 + c] for c in range(len(concepts))], params, i)[0]
    return ours, base.process_latent_out(core.replay(edit, ours.x_T, inversion.sigmas, ours.zs, form=core.FLOW))


@pytest.mark.parametrize("layout", ["wan21", "wan22"])
def test_node_path_equals_core_path(load_wan, run_node, empty, core, comfy_host, layout):
    model, clip, _ = load_wan(layout)
    model, order = record_batch_order(model)
    latent, steps, seed = video_latent(layout, 2, 3, 6, 4, seed=5), 4, 11
    inversion = invert(run_node, model, latent, steps, empty(layout), seed=seed)[0]
    concepts = concepts_for(run_node, clip, [("glasses", 5.0, False, "noise"), ("a cat", 3.0, True, "none")])
    order.clear()
    edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
    assert len(order) == steps and sorted(order[0]) == [1, 2, 3]
    ours, out = core_path(core, model, latent, inversion, empty(layout), concepts, seed, order[0])
    assert max_abs(ours.zs, inversion.zs) <= 1e-5
    err = max_abs(out, edited)
    print(f"ComfyUI {comfy_host['version']} {layout}: node path vs core path max abs difference {err:.3g}")
    assert err <= 1e-5


def test_per_frame_masks_equal_core_masks_and_images_are_independent(load_wan, run_node, empty, core):
    """Mask From Attention gives one MASK per concept, image and frame (concept-major, then image,
    then frame), equal to the core's per-frame masks bit for bit; image 0 of a batch is unchanged when
    image 1 changes; Guided Edit's `masks` output has the same layout; the capture adds no model call."""
    model, clip, _ = load_wan("wan21")
    model, order = record_batch_order(model)
    frames, h, w = 3, 8, 6
    a, b = video_latent("wan21", 2, frames, h, w, seed=1), video_latent("wan21", 2, frames, h, w, seed=1)
    b["samples"][1] = video_latent("wan21", 1, frames, h, w, seed=9)["samples"][0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "intersect"), ("rain", 4.0, True, "attention")])
    runs = []
    for latent in (a, b):
        inversion = invert(run_node, model, latent, 3, empty("wan21"))[0]
        order.clear()
        runs.append(guided_edit(run_node, model, inversion, concepts))
        assert len(order) == 3
    edited, masks, record = runs[0]
    assert masks.shape == (2 * 2 * frames, 8 * h, 8 * w)
    per_image = frames
    assert torch.equal(runs[0][1][:per_image], runs[1][1][:per_image])
    assert max_abs(runs[0][0]["samples"][0], runs[1][0]["samples"][0]) <= 1e-5
    assert record.steps[-1][0][0].shape == (2, frames, h // 2, w // 2)
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=-1, step=-1, threshold=-1.0,
                          smoothing=True, resolution="latent")
    expected = torch.cat([core.attention_mask(record.steps[-1][c][0], 0.8, (h, w)) for c in range(2)])
    assert expected.shape == (4, 1, frames, h, w)
    assert mask.shape == (2 * 2 * frames, h, w) and torch.equal(mask, expected[:, 0].reshape(-1, h, w))
    assert heat.shape[0] == 2 * 2 * frames


def test_masks_per_frame_in_the_core(core):
    """Identical frames give identical per-frame masks; a concept present only in some frames of a
    clip gets masks only there (the quantile of a cell is taken in its frame and in its clip); the
    smoothing stays within each frame."""
    generator = torch.Generator().manual_seed(0)
    frame = torch.rand(2, 1, 7, 9, generator=generator)
    same = core.attention_mask(frame.expand(2, 4, 7, 9), 0.8, (14, 18))
    assert same.shape == (2, 1, 4, 14, 18)
    assert all(torch.equal(same[:, :, t], same[:, :, 0]) for t in range(4))
    assert torch.equal(same[:, :, 0], core.attention_mask(frame[:, 0], 0.8, (14, 18)))
    psi = torch.randn(2, 16, 1, 14, 18, generator=generator).expand(2, 16, 4, 14, 18)
    m2 = core.noise_mask(psi, 0.8)
    assert all(torch.equal(m2[:, :, t], m2[:, :, 0]) for t in range(4))

    maps = 0.01 * torch.rand(1, 5, 10, 10, generator=generator)
    maps[:, :3, 2:7, 3:7] += 0.2                   # 20 % of each of frames 0-2; absent from frames 3-4
    mask = core.attention_mask(maps, 0.9, (20, 20))
    assert mask[:, :, 3:].sum() == 0 and mask[:, :, :3].sum() > 0
    truth = torch.zeros(1, 1, 5, 20, 20)
    truth[:, :, :3, 4:14, 6:14] = 1
    assert bool((mask <= truth).all())
    lone = torch.zeros(1, 3, 9, 9)
    lone[0, 1, 4, 4] = 1.0
    smoothed = core.smooth_attention(lone)
    assert smoothed[0, 0].abs().sum() == 0 and smoothed[0, 2].abs().sum() == 0 and smoothed[0, 1, 4, 4] < 1


def test_scale_reverse_and_mask_coverage(load_wan, run_node, empty, comfy_host):
    model, clip, _ = load_wan("wan21")
    latent = video_latent("wan21", 1, 3, 12, 12, seed=2)
    inversion = invert(run_node, model, latent, 5, empty("wan21"))[0]
    original = latent["samples"]

    def run(scale, reverse=False, mask_type="intersect", threshold=0.8):
        concepts = concepts_for(run_node, clip, [("a lighthouse", scale, reverse, mask_type)], threshold)
        return guided_edit(run_node, model, inversion, concepts)

    assert max_abs(run(0.0)[0]["samples"], original) <= 1e-4
    small, large = run(2.0)[0]["samples"], run(8.0)[0]["samples"]
    d_small, d_large = (small - original).norm().item(), (large - original).norm().item()
    print(f"ComfyUI {comfy_host['version']} wan21: distance from the input at scale 2 / 8: {d_small:.4g} / {d_large:.4g}")
    assert 0 < d_small < d_large
    assert not torch.allclose(run(8.0, reverse=True)[0]["samples"], large)
    for threshold in (0.5, 0.8, 0.95):
        for mask_type in ("attention", "noise"):
            record = run(5.0, mask_type=mask_type, threshold=threshold)[2]
            coverage = torch.stack([step[0][1] for step in record.steps]).mean().item()   # each step's mask
            print(f"ComfyUI {comfy_host['version']} wan21 {mask_type} mask, threshold {threshold}: "
                  f"coverage {coverage:.3f}")
            assert abs(coverage - (1 - threshold)) <= 0.15


def test_attention_capture_blocks_input(load_wan, run_node, empty):
    model, clip, _ = load_wan("wan21")
    inversion = invert(run_node, model, video_latent("wan21", 1, 2, 6, 6, seed=6), 3, empty("wan21"))[0]
    concepts = concepts_for(run_node, clip, [("a cat", 5.0, False, "attention")])
    maps = {}
    for blocks in ("auto", "all", "0", "1"):
        captured = run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                            blocks=blocks)[0]
        maps[blocks] = guided_edit(run_node, captured, inversion, concepts)[2].steps[0][0][0]   # same input
    assert torch.equal(maps["auto"], maps["1"]) and not torch.allclose(maps["0"], maps["all"])
    assert torch.allclose(maps["all"], (maps["0"] + maps["1"]) / 2, atol=1e-6)
    for bad in ("2", "x", "1-0"):
        with pytest.raises(ValueError, match="blocks"):
            run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False, blocks=bad)


def test_bad_input(load_wan, run_node, empty):
    model, clip, _ = load_wan("wan21")
    other = load_wan("wan22")[0]
    latent = video_latent("wan21", 1, 3, 6, 6)
    inversion, noisy, sigmas = invert(run_node, model, latent, 3, empty("wan21"))
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, other, inversion)
    nan = video_latent("wan21", 1, 3, 6, 6)
    nan["samples"][0, 0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, model, nan, 3, empty("wan21"))
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, clip, [("  ", 5.0, False, "intersect")])
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=video_latent("wan21", 1, 5, 6, 6))
    phantom = [[empty("wan21")[0][0], dict(empty("wan21")[0][1], time_dim_concat=torch.zeros(1, 16, 1, 6, 6))]]
    with pytest.raises(ValueError, match="reference frames"):
        invert(run_node, model, latent, 3, phantom)


WAN22_T2V_BOUNDARY = 0.875     # WAN 2.2 14B text-to-video: high-noise expert above this sigma, low-noise below


def test_wan22_14b_one_expert_per_edit(load_wan, run_node, empty, comfy_host):
    """WAN 2.2 14B's experts are each a WAN 2.1 14B MODEL; an edit uses one of them over its whole
    schedule. With the template's shift 8 and 30 steps, skip >= 0.55 keeps every step below the
    0.875 boundary, where the low-noise expert is the model ComfyUI's two-sampler template runs;
    the replay is exact with either expert, and an inversion of one expert does not replay on the
    other (two tiny WAN 2.1 models of different weights stand for the two experts)."""
    high = load_wan("wan21")[0]
    low = comfy_host["tiny"].build("wan21", seed=1)[0]
    latent = video_latent("wan21", 1, 3, 6, 8, seed=7)
    for skip, above in ((0.15, 14), (0.55, 0)):
        inversion, _, sigmas = run_node("LEditsPPInversion", model=low, latent=latent, steps=30, skip=skip, seed=0,
                                        schedule="exact", source_cfg=5.0, negative=empty("wan21"))
        assert int((sigmas[:-1] >= WAN22_T2V_BOUNDARY).sum()) == above
        err = max_abs(guided_edit(run_node, low, inversion)[0]["samples"], latent["samples"])
        print(f"ComfyUI {comfy_host['version']} one expert, 30 steps, skip {skip}: first sigma {float(sigmas[0]):.3f}, "
              f"{above} steps above {WAN22_T2V_BOUNDARY}, reconstruction max abs error {err:.3g}")
        assert err <= 1e-4
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, high, inversion)
