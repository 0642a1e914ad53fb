"""HiDream I1 attention maps and masks (tiny random model, tools/tiny_families/hidream.py): image
queries first, text keys [T5; Llama last layer; Llama layer i] after them, blocks found by call
order; maps equal a recomputation from the q/k another override sees, masks equal the core's,
scale / reverse / coverage, the `blocks` input."""
import pytest
import torch

from ledits_family_checks import check_scale_reverse_coverage
from ledits_node_calls import CallRecorder, concepts_for, guided_edit, invert
from test_family_hidream import TEXT, empty, flow_latent, hidream  # noqa: F401


def streams_mass(q, k, heads, image_tokens, t5_positions, llama_positions):
    """(B, image tokens) head-summed probability that image queries give to the concept's tokens in
    each text stream, softmax over every key; and the total mass (must be 1 per head)."""
    qh = q.reshape(q.shape[0], q.shape[1], heads, -1).transpose(1, 2).float()
    kh = k.reshape(k.shape[0], k.shape[1], heads, -1).transpose(1, 2).float()
    probs = torch.softmax(qh[:, :, :image_tokens] @ kh.transpose(-1, -2) * qh.shape[-1] ** -0.5, dim=-1)
    llama = (k.shape[1] - image_tokens - 128) // 2
    text = image_tokens
    columns = {"T5": [text + p for p in t5_positions],
               "Llama last": [text + 128 + p for p in llama_positions],
               "Llama layer i": [text + 128 + llama + p for p in llama_positions]}
    return {name: probs[..., cols].sum(-1).sum(1) for name, cols in columns.items()}, probs.sum(-1)


def test_maps_are_the_concept_mass_of_all_text_streams_no_extra_call_and_compose(hidream, run_node, empty):
    """Every call is one joint attention [image; T5 (128); Llama last (128); Llama layer i (128)];
    the map is the image queries' mass on the concept's tokens of all three streams out of all keys,
    averaged over blocks and heads; a foreign override keeps running, one model call per step, and
    the untouched MODEL samples bit-identically after."""
    model, clip, _ = hidream
    latent_img = run_node("EmptySD3LatentImage", width=80, height=48, batch_size=1)[0]

    def sample(m):
        return run_node("KSampler", model=m, seed=3, steps=3, cfg=5.0, sampler_name="euler", scheduler="simple",
                        positive=empty, negative=empty, latent_image=latent_img, denoise=1.0)[0]
    before = sample(model)["samples"]

    foreign = CallRecorder()
    patched = model.clone()
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    calls = []
    patched.set_model_unet_function_wrapper(
        lambda apply_model, args: calls.append(1) or apply_model(args["input"], args["timestep"], **args["c"]))
    latent = flow_latent(2, 9, 6, seed=1)                  # odd height: padded to 10 -> 5 x 3 tokens
    steps = 3
    inversion = invert(run_node, patched, latent, steps, empty)[0]
    concepts = concepts_for(run_node, clip, [(TEXT, 6.0, False, "attention")])
    calls.clear()
    foreign.seen.clear()
    _, masks, record = guided_edit(run_node, patched, inversion, concepts)
    assert len(calls) == steps and len(foreign.seen) == steps * 2        # 1 double + 1 single block
    for step in record.steps:
        assert step[0][0].shape == (2, 5, 3)
    assert masks.shape == (2, 72, 48)

    spec = concepts[0]
    t5 = [p for p in spec.token_positions if p < 128]
    llama = [p - 128 for p in spec.token_positions if p >= 128]
    total, heads_total, shares = torch.zeros(2, 15), 0, {}
    for chunks, q, k, heads in foreign.seen[-2:]:           # the last step's two blocks
        assert q.shape[1] == k.shape[1] == 15 + 3 * 128
        rows = slice(chunks.index(2) * 2, chunks.index(2) * 2 + 2)
        per_stream, mass = streams_mass(q[rows], k[rows], heads, 15, t5, llama)
        assert torch.allclose(mass, torch.ones_like(mass), atol=1e-5)
        total += sum(per_stream.values())
        heads_total += heads
        for name, value in per_stream.items():
            shares[name] = shares.get(name, 0.0) + float(value.mean())
    ours = record.steps[-1][0][0].reshape(2, -1)
    print("hidream: concept mass per text stream (last step, summed over blocks and heads):",
          {name: round(v, 4) for name, v in shares.items()})
    assert torch.allclose(ours, total / heads_total, atol=1e-5)
    assert bool((ours > 0).all()) and bool((ours < 1).all())
    assert torch.equal(sample(model)["samples"], before)


def test_mask_from_attention_equals_core_masks_and_images_are_independent(hidream, run_node, empty, core):
    model, clip, _ = hidream
    a, b = flow_latent(2, 8, 8, seed=1), flow_latent(2, 8, 8, seed=1)
    b["samples"][1] = flow_latent(1, 8, 8, seed=9)["samples"][0]
    concepts = concepts_for(run_node, clip, [("a dog", 5.0, False, "intersect")])
    runs = []
    for latent in (a, b):
        inversion = invert(run_node, model, latent, 4, empty)[0]
        runs.append(guided_edit(run_node, model, inversion, concepts))
    assert torch.equal(runs[0][1][0], runs[1][1][0]) and not torch.equal(runs[0][1][1], runs[1][1][1])
    assert torch.allclose(runs[0][0]["samples"][0], runs[1][0]["samples"][0], atol=1e-5)
    record = runs[0][2]
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=0, step=-1, threshold=-1.0,
                          smoothing=True, resolution="latent")
    expected = core.attention_mask(record.steps[-1][0][0], 0.8, (8, 8))[:, 0]
    assert torch.equal(mask, expected) and heat.shape == (2, 64, 64, 3)


def test_scale_reverse_and_mask_coverage(hidream, run_node, empty):
    model, clip, _ = hidream
    check_scale_reverse_coverage(run_node, model, clip, flow_latent(1, 16, 16, seed=2), empty, "hidream")


def test_attention_capture_blocks_input(hidream, run_node, empty):
    model, clip, _ = hidream
    latent = flow_latent(1, 8, 8, seed=6)
    inversion = invert(run_node, model, latent, 3, empty)[0]
    concepts = concepts_for(run_node, clip, [("a cat", 0.0, False, "attention")])   # scale 0: one trajectory
    maps = {}
    for blocks in ("auto", "all", "0", "1", "0-1"):
        captured = run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False,
                            blocks=blocks)[0]
        assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})
        maps[blocks] = guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0]
    assert not torch.allclose(maps["0"], maps["1"])
    assert torch.allclose(maps["all"], (maps["0"] + maps["1"]) / 2, atol=1e-6)     # both blocks: 2 heads each
    assert torch.equal(maps["auto"], maps["all"]) and torch.equal(maps["0-1"], maps["all"])
    for first, last in (("0", "1"), ("1", "0")):          # chained capture nodes: the last one decides
        captured = model
        for blocks in (first, last):
            captured = run_node("LEditsPPAttentionCapture", model=captured, resolution="latent/4",
                                include_middle=False, blocks=blocks)[0]
        assert torch.equal(guided_edit(run_node, captured, inversion, concepts)[2].steps[-1][0][0], maps[last])
    for bad in ("2", "x", "1-0"):
        with pytest.raises(ValueError, match="blocks"):
            run_node("LEditsPPAttentionCapture", model=model, resolution="latent/4", include_middle=False, blocks=bad)
