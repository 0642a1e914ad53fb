"""HiDream I1 (tiny random model built from ComfyUI's own classes, tools/tiny_families/hidream.py):
model sampling, text layout and token positions, exact reconstruction, node path = core path,
refusals. The attention-map tests are in test_family_hidream_maps.py."""
import contextlib

import pytest
import torch

from ledits_core_path import core_path_edit, record_batch_order
from ledits_node_calls import concepts_for, guided_edit, invert, seeded_latent

TEXT = "a photo of a red cat"


@pytest.fixture(scope="module")
def hidream(comfy_host):
    """(MODEL, CLIP, VAE) of the tiny HiDream I1, seed 0."""
    return comfy_host["tiny"].build("hidream", seed=0)


@pytest.fixture(scope="module")
def family(comfy_host):
    import sys
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.families"].HIDREAM


@pytest.fixture(scope="module")
def empty(hidream, run_node):
    return run_node("CLIPTextEncode", clip=hidream[1], text="")[0]


def flow_latent(batch, h, w, seed=0):
    return seeded_latent(batch, 16, h, w, seed=seed)


def test_family_sampling_and_text_layout(hidream, family, run_node, empty):
    """FLOW shift 1.0 / multiplier 1000 (the class's second, empty sampling_settings wins); context =
    128 T5 tokens, conditioning_llama3 = every Llama layer over >= 128 tokens (BOS kept: the TE's
    [:, 1:] drops the embedding layer, not a token); the zero unconditional has the same shapes."""
    import comfy.model_sampling
    model, clip, _ = hidream
    sampling = model.get_model_object("model_sampling")
    assert isinstance(sampling, comfy.model_sampling.ModelSamplingDiscreteFlow)
    assert sampling.shift == 1.0 and sampling.multiplier == 1000
    cond = run_node("CLIPTextEncode", clip=clip, text=TEXT)[0]
    context, extras = cond[0]
    assert context.shape == (1, 128, 64) and extras["pooled_output"].shape == (1, 128)
    assert extras["conditioning_llama3"].shape == (1, 2, 128, 64)
    zero_context, zero_extras = family.zero_conditioning(model)[0]
    assert zero_context.shape == context.shape and not zero_context.any()
    for key in ("pooled_output", "conditioning_llama3"):
        assert zero_extras[key].shape == extras[key].shape and not zero_extras[key].any()
    assert family.context_width(model) == 64
    assert empty[0][1]["conditioning_llama3"].shape == (1, 2, 128, 64)


def test_concept_token_positions_are_the_words_in_t5_and_llama(hidream, run_node):
    """The positions the mask reads: the concept's T5 tokens (EOS and padding out) at 0..127 and
    its Llama tokens (BOS and padding out) from 128 on, each checked against the host's own
    tokenizer of that stream (the Llama one reads the stand-in tokenizer.json)."""
    _, clip, _ = hidream
    spec = concepts_for(run_node, clip, [(TEXT, 5.0, False, "attention")])[0]
    t5 = clip.tokenizer.t5xxl.tokenizer(TEXT)["input_ids"]
    llama = clip.tokenizer.llama.tokenizer(TEXT)["input_ids"]
    assert t5[-1] == 1 and llama[0] == 128000            # T5 EOS at the end, Llama BOS in front
    t5_words, llama_words = len(t5) - 1, len(llama) - 1
    expected = list(range(t5_words)) + [128 + 1 + j for j in range(llama_words)]
    print(f"'{TEXT}': {t5_words} T5 tokens, {llama_words} Llama tokens -> positions {list(spec.token_positions)}")
    assert list(spec.token_positions) == expected and spec.context_length == 128
    tokens = clip.tokenize(TEXT)
    assert [t for t, _ in tokens["t5xxl"][0][:t5_words]] == t5[:-1]
    assert [t for t, _ in tokens["llama"][0][1:1 + llama_words]] == llama[1:]
    assert all(t == 128009 for t, _ in tokens["llama"][0][1 + llama_words:])   # padding, not read


@pytest.mark.parametrize("steps, size", [(2, (9, 7)), (15, (7, 11))])
def test_reconstruction_guided_edit_and_custom_sampler(hidream, run_node, empty, steps, size):
    model = hidream[0]
    latent = flow_latent(2, *size)
    inversion, noisy, sigmas = invert(run_node, model, latent, steps, empty)
    assert inversion.zs.shape == (steps, 2, 16, *size) and float(sigmas[0]) < 1.0
    edited = guided_edit(run_node, model, inversion)[0]
    err = (edited["samples"] - latent["samples"]).abs().max().item()
    print(f"hidream steps={steps} latent={size}: GuidedEdit reconstruction max abs error {err:.3g}")
    assert err <= 1e-4

    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=5.0, guidance_rescale=0.0)[0]
    sampler = run_node("LEditsPPSampler", inversion=inversion)[0]
    out = run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider, sampler=sampler,
                   sigmas=sigmas, latent_image=noisy)[0]
    err = (out["samples"] - latent["samples"]).abs().max().item()
    print(f"hidream steps={steps}: SamplerCustomAdvanced reconstruction max abs error {err:.3g}")
    assert err <= 1e-4


def test_unconnected_negative_and_user_sigmas_reconstruct(hidream, run_node):
    """No `negative`: the zero unconditional; sigmas from the host's BasicScheduler (1 -> 0 on the
    shift-1 grid) are made exact."""
    model = hidream[0]
    sigmas = run_node("BasicScheduler", model=model, scheduler="simple", steps=8, denoise=1.0)[0]
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    latent = flow_latent(1, 8, 6, seed=4)
    inversion, _, kept = run_node("LEditsPPInversion", model=model, latent=latent, steps=8, skip=0.0, seed=0,
                                  schedule="exact", source_cfg=3.5, sigmas=sigmas)
    assert 0.99 < float(kept[0]) < 1.0 and float(kept[-1]) > 0.0
    assert not inversion.base.negative[0][1]["conditioning_llama3"].any()
    err = (guided_edit(run_node, model, inversion)[0]["samples"] - latent["samples"]).abs().max().item()
    print(f"hidream BasicScheduler sigmas, no negative: reconstruction max abs error {err:.3g}")
    assert err <= 1e-4


@contextlib.contextmanager
def llama_from_context(base, conditionings):
    """core_path_edit hands apply_model the context and pooled vector only; HiDream also needs the
    Llama states: each batch row's are those of the conditioning whose context it carries."""
    table = [(cond[0][0][0], cond[0][1]["conditioning_llama3"][0]) for cond in conditionings]
    apply_model = base.apply_model

    def with_llama(x, t, c_crossattn=None, **kwargs):
        llama = torch.stack([next(states for context, states in table if torch.equal(row, context))
                             for row in c_crossattn])
        return apply_model(x, t, c_crossattn=c_crossattn, encoder_hidden_states_llama3=llama, **kwargs)
    base.apply_model = with_llama
    try:
        yield
    finally:
        del base.apply_model


def test_node_path_equals_core_path(hidream, run_node, empty, core):
    """GuidedEdit == ledits_core with the model's own apply_model, batched in the host's order."""
    model, clip, _ = hidream
    model, order = record_batch_order(model)
    latent = flow_latent(2, 8, 6, seed=5)
    steps, seed = 5, 11
    inversion = invert(run_node, model, latent, steps, empty, seed=seed)[0]
    concepts = concepts_for(run_node, clip, [("glasses", 5.0, False, "noise"), ("cat", 3.0, True, "none")])
    order.clear()
    edited = guided_edit(run_node, model, inversion, concepts)[0]["samples"]
    assert len(order) == steps and inversion.base.guidance is None

    with llama_from_context(model.model, [empty] + [c.conditioning for c in concepts]):
        ours, out = core_path_edit(core, model, latent, inversion, empty, concepts, steps, seed, order[0],
                                   core.FLOW, pooled=True)
    assert (ours.zs - inversion.zs).abs().max().item() <= 1e-5
    err = (out - edited).abs().max().item()
    print(f"hidream: node path vs core path max abs difference {err:.3g}")
    assert err <= 1e-5


def test_bad_input(hidream, comfy_host, run_node, empty):
    model, clip, _ = hidream
    other = comfy_host["tiny"].build("hidream", seed=1)[0]
    latent = flow_latent(1, 8, 8)
    inversion, noisy, sigmas = invert(run_node, model, latent, 3, empty)
    with pytest.raises(ValueError, match="another model"):
        guided_edit(run_node, other, inversion)
    with pytest.raises(ValueError, match="empty"):
        concepts_for(run_node, clip, [("  ", 5.0, False, "intersect")])
    nan = flow_latent(1, 8, 8)
    nan["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert(run_node, model, nan, 3, empty)
    sd3_clip = comfy_host["tiny"].build("sd3", seed=0)[1]
    with pytest.raises(ValueError, match="CLIP"):
        guided_edit(run_node, model, inversion, concepts_for(run_node, sd3_clip, [("hat", 5.0, False, "noise")]))
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=1.0, guidance_rescale=0.0)[0]
    with pytest.raises(Exception, match="shape|inversion"):
        run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                 sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas,
                 latent_image=flow_latent(1, 8, 10))


def test_hidream_e1_instruct_conditioning_is_refused(hidream, run_node, empty):
    """HiDream E1 edits by instruction with the source image concatenated along the width
    (InstructPixToPixConditioning -> `concat_latent_image` -> the model's `image_cond`): Inversion
    and the edit refuse it instead of inverting a doubled-width sequence."""
    model, _, vae = hidream
    pixels = torch.rand(1, 64, 48, 3)
    positive, negative, _ = run_node("InstructPixToPixConditioning", positive=empty, negative=empty, vae=vae,
                                     pixels=pixels)
    assert "concat_latent_image" in negative[0][1]
    latent = flow_latent(1, 8, 6)
    with pytest.raises(ValueError, match="HiDream E1") as error:
        invert(run_node, model, latent, 3, negative)
    assert "HiDream I1" in str(error.value)
    inversion = invert(run_node, model, latent, 3, empty)[0]
    with pytest.raises(ValueError, match="HiDream E1"):
        guided_edit(run_node, model, inversion, negative=negative)
    with pytest.raises(ValueError, match="HiDream E1"):
        guided_edit(run_node, model, inversion, positive=positive)


def test_auto_blocks_are_flux_rule_at_any_size(hidream, family):
    """'auto' = every double-stream block plus the second half of the single-stream ones."""
    import types
    full = types.SimpleNamespace(double_stream_blocks=[None] * 16, single_stream_blocks=[None] * 32)
    assert list(family.default_blocks(full)) == list(range(16)) + list(range(32, 48))
    sites = family.joint_blocks(full)
    assert len(sites) == 48 and sites[15] == ("double_block", 15) and sites[16] == ("single_block", 0)
    assert list(family.default_blocks(hidream[0].model.diffusion_model)) == [0, 1]
