"""MASK outputs at the picture's size: the pixels per latent cell come from the model's latent format
(nodes/previews.pixel_scale): 8 for WAN 2.1, 16 for WAN 2.2 5B (both hosts: 0.3.64 by the format's
name) and Flux.2 (0.33+, skipped with the reason elsewhere)."""
import sys
import types

import pytest

from test_family_wan import concepts_for, encode, guided_edit, invert, load_wan, video_latent  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def previews(comfy_host):
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.previews"]


def test_scale_from_the_latent_format_with_a_fallback(previews):
    import comfy.latent_formats as formats

    def model_with(fmt):
        return types.SimpleNamespace(model=types.SimpleNamespace(latent_format=fmt))
    assert previews.pixel_scale(model_with(formats.Wan21())) == 8
    assert previews.pixel_scale(model_with(formats.Wan22())) == 16
    assert previews.pixel_scale(model_with(formats.SDXL())) == 8
    if hasattr(formats, "Flux2"):
        assert previews.pixel_scale(model_with(formats.Flux2())) == 16
    old_wan22 = type("Wan22", (), {})           # a host without the ratio attribute (0.3.64): by name
    assert previews.pixel_scale(model_with(type("Sub", (old_wan22,), {})())) == 16
    assert previews.pixel_scale(model_with(type("Plain", (), {})())) == 8 and previews.pixel_scale(object()) == 8


@pytest.mark.parametrize("layout, scale", [("wan21", 8), ("wan22", 16)])
def test_wan_guided_edit_masks_have_the_pictures_size(load_wan, run_node, layout, scale):
    model, clip, _ = load_wan(layout)
    frames, h, w = 2, 6, 4
    inversion = invert(run_node, model, video_latent(layout, 1, frames, h, w, seed=3), 2, encode(run_node, clip, ""))[0]
    concepts = concepts_for(run_node, clip, [("a cat", 4.0, False, "intersect")])
    _, masks, record = guided_edit(run_node, model, inversion, concepts)
    assert masks.shape == (frames, scale * h, scale * w)
    mask, heat = run_node("LEditsPPMaskFromAttention", attention=record, concept=0, step=-1, threshold=-1.0,
                          smoothing=True, resolution="image")
    assert mask.shape == (frames, scale * h, scale * w) and heat.shape == (frames, scale * h, scale * w, 3)


def test_flux2_guided_edit_masks_have_the_pictures_size(comfy_host, run_node):
    skipped = comfy_host["tiny"].SKIPPED_LAYOUTS
    if "flux2_klein" in skipped:
        pytest.skip(f"ComfyUI {comfy_host['version']}: {skipped['flux2_klein']}")
    from test_family_chroma import latent_of
    model, clip, _ = comfy_host["tiny"].build("flux2_klein", seed=0)
    empty = encode(run_node, clip, "")
    inversion = run_node("LEditsPPInversion", model=model, latent=latent_of(128, 1, 6, 4, 0), steps=2, skip=0.15,
                         seed=0, schedule="exact", source_cfg=1.0, negative=empty)[0]
    chain = run_node("LEditsPPEditConcept", clip=clip, text="a cat", scale=4.0, threshold=0.8, reverse=False,
                     warmup=0, cooldown=10000, mask_type="intersect", concepts=None)[0]
    masks = run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=chain, cfg=1.0,
                     guidance_rescale=0.0)[1]
    assert masks.shape == (1, 16 * 6, 16 * 4)
