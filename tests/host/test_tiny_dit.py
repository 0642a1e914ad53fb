"""Tiny flow-matching DiTs (tools/tiny_dit_models.py) in the real host: ComfyUI's own SD3 / Flux
sampling, conditioning, latent format and attention calls, through the test-only loader node
"LeditsTestTinyModel" (in-process and over HTTP) and, for SD3 layouts, a checkpoint file.

Assertions are on what the pack relies on (model_sampling kind, context/pooled shapes, the q/k/v
layout handed to transformer_options["optimized_attention_override"]), not on image content."""
import io

import pytest
import torch

DIT_LAYOUTS = ["sd3", "sd35", "flux", "flux_schnell"]
W, H = 64, 48                                  # pixels -> latent 8 x 6 -> 4 x 3 patches
IMAGE_TOKENS = (W // 16) * (H // 16)           # VAE /8, patch 2
CONTEXT = {"sd3": (77, 4096), "sd35": (77, 4096), "flux": (256, 64), "flux_schnell": (256, 64)}
POOLED = {"sd3": 128, "sd35": 128, "flux": 64, "flux_schnell": 64}
CFG = {"sd3": 4.0, "sd35": 4.0, "flux": 1.0, "flux_schnell": 1.0}
LOADER = "LeditsTestTinyModel"


def is_flux(layout):
    return layout.startswith("flux")


@pytest.fixture(scope="module")
def tiny_dit(run_node):
    """layout -> (MODEL, CLIP, VAE) from the loader node (seed 0; the node caches them)."""
    return lambda layout: run_node(LOADER, layout=layout, seed=0)


def encode(run_node, clip, text):
    return run_node("CLIPTextEncode", clip=clip, text=text)[0]


def sample(run_node, model, clip, layout, steps=4, cfg=None):
    pos, neg = encode(run_node, clip, "a photo of a cat"), encode(run_node, clip, "")
    latent = run_node("EmptySD3LatentImage", width=W, height=H, batch_size=1)[0]
    return run_node("KSampler", model=model, seed=5, steps=steps, cfg=CFG[layout] if cfg is None else cfg,
                    sampler_name="euler", scheduler="simple", positive=pos, negative=neg,
                    latent_image=latent, denoise=1.0)[0]


@pytest.mark.parametrize("layout", DIT_LAYOUTS)
def test_loader_sampling_and_decode(run_node, tiny_dit, layout):
    import comfy.latent_formats
    import comfy.model_sampling as ms
    model, clip, vae = tiny_dit(layout)
    assert run_node(LOADER, layout=layout, seed=0)[0] is model      # cached per (layout, seed)
    sampling = model.model.model_sampling
    assert isinstance(sampling, ms.CONST)
    if layout == "flux":
        assert isinstance(sampling, ms.ModelSamplingFlux)
    else:
        assert isinstance(sampling, ms.ModelSamplingDiscreteFlow)
        assert sampling.shift == (1.0 if layout == "flux_schnell" else 3.0)
        assert sampling.multiplier == (1.0 if layout == "flux_schnell" else 1000)
    latent_format = comfy.latent_formats.Flux if is_flux(layout) else comfy.latent_formats.SD3
    assert type(model.model.latent_format) is latent_format

    cond = encode(run_node, clip, "a photo of a cat")
    assert cond[0][0].shape == (1, *CONTEXT[layout])
    assert cond[0][1]["pooled_output"].shape == (1, POOLED[layout])
    out = sample(run_node, model, clip, layout)
    assert out["samples"].shape == (1, 16, H // 8, W // 8)
    assert bool(torch.isfinite(out["samples"]).all()) and out["samples"].abs().max() > 0
    image = run_node("VAEDecode", samples=out, vae=vae)[0]
    assert image.shape == (1, H, W, 3) and bool(torch.isfinite(image).all())


@pytest.mark.parametrize("layout", DIT_LAYOUTS)
def test_same_seed_same_weights(comfy_host, layout):
    tiny = comfy_host["tiny"]
    (a, clip_a, _), (b, clip_b, _) = tiny.build(layout, seed=3), tiny.build(layout, seed=3)
    c = tiny.build(layout, seed=4)[0]
    sd_a, sd_b, sd_c = (m.model.diffusion_model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert not all(torch.equal(sd_a[k], sd_c[k]) for k in sd_a)
    te_a, te_b = clip_a.cond_stage_model.state_dict(), clip_b.cond_stage_model.state_dict()
    assert all(torch.equal(te_a[k], te_b[k]) for k in te_a)
    assert float(a.model.model_sampling.sigma_max) == 1.0    # flow sigmas kept, not overwritten


@pytest.mark.parametrize("layout", ["sd3", "sd35"])
def test_sd3_checkpoint_loads(comfy_host, session_dir, run_node, layout):
    """detect_unet_config() reproduces the tiny MMDiT config: the file loads as the tiny class."""
    tiny = comfy_host["tiny"]
    name = f"tiny_dit_{layout}.safetensors"
    tiny.write_checkpoint(layout, session_dir / "checkpoints" / name, seed=0)
    model, clip, vae = run_node("CheckpointLoaderSimple", ckpt_name=name)[:3]
    assert type(model.model.model_config) is tiny.CLASSES[layout]
    built, built_clip, _ = tiny.build(layout, seed=0)
    sd_file, sd_built = model.model.diffusion_model.state_dict(), built.model.diffusion_model.state_dict()
    assert sd_file.keys() == sd_built.keys() and all(torch.equal(sd_file[k], sd_built[k]) for k in sd_file)
    cond_file, cond_built = encode(run_node, clip, "a cat"), encode(run_node, built_clip, "a cat")
    assert torch.equal(cond_file[0][0], cond_built[0][0])
    assert torch.equal(cond_file[0][1]["pooled_output"], cond_built[0][1]["pooled_output"])


def test_flux_has_no_checkpoint_file(comfy_host, tmp_path):
    with pytest.raises(ValueError, match="in memory only"):
        comfy_host["tiny"].write_checkpoint("flux", tmp_path / "flux.safetensors")


def record_attention(model):
    """A clone whose optimized_attention_override records each call, then runs the real function."""
    calls = []

    def override(func, *args, **kwargs):
        options = kwargs.get("transformer_options", {})
        calls.append({"func": getattr(func, "__name__", repr(func)),
                      "shapes": [tuple(a.shape) for a in args[:3]], "heads": args[3] if len(args) > 3 else kwargs.get("heads"),
                      "kwargs": sorted(kwargs), "skip_reshape": kwargs.get("skip_reshape", False),
                      "mask": None if kwargs.get("mask") is None else tuple(kwargs["mask"].shape),
                      "options": sorted(options),
                      "block": [options.get(k) for k in ("block_type", "block_index", "total_blocks", "img_slice")]})
        return func(*args, **kwargs)
    clone = model.clone()
    clone.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    return clone, calls


@pytest.mark.parametrize("layout", DIT_LAYOUTS)
def test_attention_override_receives(comfy_host, run_node, tiny_dit, layout):
    """What a joint-attention hook sees. SD3: q, k (B, 77 + image tokens, heads*64) but v still
    (B, tokens, heads, 64) (MMDiT's split_qkv; the attention functions' view() accepts both), heads
    as a keyword; SD3.5 adds one image-only call per model call. Flux: q, k, v
    (B, heads, 256 + image tokens, 64), skip_reshape=True, rope already applied to q and k.
    Two steps at cfg 1: B = 1, one model call per step."""
    model, clip, _ = tiny_dit(layout)
    clone, calls = record_attention(model)
    steps = 2
    out = sample(run_node, clone, clip, layout, steps=steps, cfg=1.0)
    plain = sample(run_node, model, clip, layout, steps=steps, cfg=1.0)
    assert torch.equal(out["samples"], plain["samples"])      # the recording override is transparent
    print(f"\nComfyUI {comfy_host['version']} {layout}: {len(calls)} calls in {steps} steps; first: {calls[0]}")
    for call in {str(c): c for c in calls}.values():
        print(f"  {call}")
    if is_flux(layout):
        shape = (1, 2, 256 + IMAGE_TOKENS, 64)
        assert all(c["shapes"] == [shape] * 3 and c["skip_reshape"] is True and c["heads"] == 2 for c in calls)
        assert len(calls) == steps * 4                          # 2 double + 2 single blocks
    else:
        def qkv(tokens):
            return [(1, tokens, 128), (1, tokens, 128), (1, tokens, 2, 64)]
        joint = [c for c in calls if c["shapes"] == qkv(77 + IMAGE_TOKENS)]
        image_only = [c for c in calls if c["shapes"] == qkv(IMAGE_TOKENS)]
        assert len(joint) == steps * 2 and all(c["heads"] == 2 and not c["skip_reshape"] for c in calls)
        assert len(image_only) == (steps if layout == "sd35" else 0)
        assert len(joint) + len(image_only) == len(calls)
    assert all("transformer_options" in c["kwargs"] for c in calls)


def loader_prompt(layout, prefix):
    """Loader node -> KSampler (euler, 4 steps) -> VAEDecode -> SaveImage."""
    return {
        "1": {"class_type": LOADER, "inputs": {"layout": layout, "seed": 0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptySD3LatentImage", "inputs": {"width": W, "height": H, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": 21, "steps": 4, "cfg": CFG[layout], "sampler_name": "euler", "scheduler": "simple",
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


def check_image(read_bytes, outputs):
    from PIL import Image
    image = Image.open(io.BytesIO(read_bytes(outputs["7"]["images"][0])))
    assert image.size == (W, H) and image.mode == "RGB"


def test_loader_prompt_in_process(run_prompt, comfy_host):
    import pathlib
    output_dir = pathlib.Path(comfy_host["folder_paths"].get_output_directory())
    outputs, _ = run_prompt(loader_prompt("flux_schnell", "tiny-dit-inproc"))
    check_image(lambda item: (output_dir / item.get("subfolder", "") / item["filename"]).read_bytes(), outputs)


@pytest.mark.parametrize("layout", ["flux", "sd3"])
def test_loader_prompt_over_http(post_prompt, comfy_server, layout):
    info = comfy_server.object_info(LOADER)
    assert info["display_name"] == "LEDITS++ Test: Tiny Model"
    assert info["output"] == ["MODEL", "CLIP", "VAE"]
    entry = post_prompt(loader_prompt(layout, f"tiny-dit-http-{layout}"))
    assert entry["status"]["status_str"] == "success"
    check_image(comfy_server.view, entry["outputs"])
