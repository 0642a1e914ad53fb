"""Issue #16: LEDITS++ on WAN video (tiny WAN 2.1 and WAN 2.2 5B text-to-video models built from the
host's own classes, tools/tiny_families/wan.py): the host's WAN sampling and text path, the umT5
concept positions, the cross-attention capture on the (frames, h/2, w/2) token grid, refusals."""
import sys

import pytest
import torch

LAYOUTS = ("wan21", "wan22")
CHANNELS = {"wan21": 16, "wan22": 48}


@pytest.fixture(scope="module")
def load_wan(comfy_host):
    cache = {}

    def load(layout):
        if layout not in cache:
            cache[layout] = comfy_host["tiny"].build(layout, seed=0)
        return cache[layout]
    return load


@pytest.fixture(scope="module")
def families(comfy_host):
    return sys.modules[comfy_host["pack"].__name__ + ".nodes.families"]


@pytest.fixture(scope="module")
def capture(comfy_host):
    pack = comfy_host["pack"].__name__
    return sys.modules[pack + ".nodes.capture"]


def video_latent(layout, batch, frames, h, w, seed=0):
    shape = (batch, CHANNELS[layout], frames, h, w)
    return {"samples": torch.randn(shape, generator=torch.Generator().manual_seed(seed))}


def encode(run_node, clip, text):
    return run_node("CLIPTextEncode", clip=clip, text=text)[0]


def invert(run_node, model, latent, steps, negative=None, seed=0, **extra):
    return run_node("LEditsPPInversion", model=model, latent=latent, steps=steps, skip=0.15, seed=seed,
                    schedule="exact", source_cfg=5.0, negative=negative, **extra)


def concepts_for(run_node, clip, specs, threshold=0.8):
    chain = None
    for text, scale, reverse, mask_type in specs:
        chain = run_node("LEditsPPEditConcept", clip=clip, text=text, scale=scale, threshold=threshold,
                         reverse=reverse, warmup=0, cooldown=10000, mask_type=mask_type, concepts=chain)[0]
    return chain


def guided_edit(run_node, model, inversion, concepts=None, **extra):
    return run_node("LEditsPPGuidedEdit", model=model, inversion=inversion, concepts=concepts, cfg=5.0,
                    guidance_rescale=0.0, **extra)


def max_abs(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiny_wan_is_the_hosts_wan(run_node, load_wan, families, layout):
    """FLOW sampling (shift 8, multiplier 1000), the WAN latent format, the WAN family; a 5-frame clip
    through the VAE gives 2 latent frames (4x in time), where this host's WAN VAE can be small."""
    import comfy.latent_formats
    import comfy.model_sampling as ms
    model, clip, vae = load_wan(layout)
    sampling = model.model.model_sampling
    assert isinstance(sampling, ms.ModelSamplingDiscreteFlow) and isinstance(sampling, ms.CONST)
    assert sampling.shift == 8.0 and sampling.multiplier == 1000
    fmt = comfy.latent_formats.Wan22 if layout == "wan22" else comfy.latent_formats.Wan21
    assert type(model.model.latent_format) is fmt
    assert families.family_of(model) is families.WAN
    if vae is None:
        pytest.skip(f"{layout}: this host (ComfyUI 0.3.64) fixes the WAN 2.2 VAE at width 160 (705 M parameters) "
                    "and has no TAEHV: the tiny model has no VAE here")
    clip_frames = torch.rand(5, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    latent = run_node("VAEEncode", pixels=clip_frames, vae=vae)[0]["samples"]
    scale = 16 if layout == "wan22" else 8
    assert latent.shape == (1, CHANNELS[layout], 2, 64 // scale, 96 // scale)
    decoded = run_node("VAEDecode", samples={"samples": latent}, vae=vae)[0]
    assert decoded.shape[-3:] == (64, 96, 3) and decoded.shape[0] in (5, 8)


def test_concept_token_positions_are_the_umt5_tokens_of_the_words(load_wan, families):
    """umT5: no BOS, the text's tokens, EOS (1), padding (0) to 512; the positions are exactly the
    text's tokens as the host's SentencePiece tokenizer makes them, and the rows after EOS are zero."""
    _, clip, _ = load_wan("wan21")
    text = "a photo of a red cat"
    positions, length = families.concept_layout(clip, clip.tokenize(text, return_word_ids=True))
    inner = getattr(clip.tokenizer, clip.tokenizer.clip)
    ids = inner.tokenizer(text)["input_ids"]
    assert ids[-1] == 1                                          # EOS, no BOS
    assert length == 512 and positions == list(range(len(ids) - 1))
    stream = clip.tokenize(text)["umt5xxl"][0]
    assert [t for t, _ in stream[:len(ids)]] == ids and all(t == 0 for t, _ in stream[len(ids):])
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))[0][0]
    assert cond.shape == (1, 512, 64)
    assert bool((cond[0, len(ids):] == 0).all()) and bool((cond[0, :len(ids)].abs().sum(-1) > 0).all())


class RecordingOverride:
    """A foreign optimized_attention_override: counts its calls, keeps the labelled blocks' q/k."""

    def __init__(self):
        self.calls = 0
        self.seen = []

    def __call__(self, func, *args, **kwargs):
        self.calls += 1
        options = kwargs.get("transformer_options") or {}
        if options.get("ledits_pp_block") is not None:
            self.seen.append((list(options.get("cond_or_uncond", [])), args[0].detach().clone(),
                              args[1].detach().clone(), kwargs["heads"]))
        return func(*args, **kwargs)


def sample_with_capture(run_node, model, families, capture, positive, negative, latent, concepts, blocks="all",
                        foreign=None, spatial_only=False):
    """One euler step of the host's KSampler on a clone carrying the capture and a request for
    `concepts` ({cond index: (positions, context length)}; 0 = positive, 1 = negative), around a
    `foreign` override (0.3.64's clone() deep-copies model_options: it is set on the clone itself).
    `spatial_only`: the request gets the latent's (H, W) and counts the frames from the calls."""
    network = model.model.diffusion_model
    config = capture.CaptureConfig(blocks=blocks)
    size = latent["samples"].shape[-2:] if spatial_only else latent["samples"].shape[2:]
    request = families.WAN.capture_request(concepts, size, config, network)
    clone = model.clone()
    if foreign is not None:
        clone.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    clone.model_options = capture.with_request(families.WAN.install_capture(clone.model_options, network, config),
                                               request)
    out = run_node("KSampler", model=clone, seed=1, steps=1, cfg=5.0, sampler_name="euler", scheduler="simple",
                   positive=positive, negative=negative, latent_image=latent, denoise=1.0)[0]
    return request, out


@pytest.mark.parametrize("layout, frames, size", [("wan21", 3, (6, 10)), ("wan22", 2, (5, 4))])
def test_cross_attention_maps_on_the_token_grid(run_node, load_wan, families, capture, layout, frames, size):
    """Maps are (B, frames, h/2, w/2); a "concept" of all 512 text rows has mass exactly 1 (the softmax
    runs over the text keys only); a concept's map equals the mass recomputed from the q/k a foreign
    override saw; the foreign override keeps running, the host makes no extra model call, and the
    untouched MODEL samples bit-identically afterwards."""
    model, clip, _ = load_wan(layout)
    positive, negative = encode(run_node, clip, "a photo of a red cat"), encode(run_node, clip, "")
    latent = video_latent(layout, 2, frames, *size)
    before = run_node("KSampler", model=model, seed=1, steps=1, cfg=5.0, sampler_name="euler", scheduler="simple",
                      positive=positive, negative=negative, latent_image=latent, denoise=1.0)[0]["samples"]
    grid = (frames, (size[0] + 1) // 2, (size[1] + 1) // 2)
    tokens = grid[0] * grid[1] * grid[2]

    everything = {0: (tuple(range(512)), 512)}
    request, _ = sample_with_capture(run_node, model, families, capture, positive, negative, latent, everything)
    ones = request.maps.map(0)
    assert ones.shape == (2, *grid) and torch.allclose(ones, torch.ones_like(ones), atol=1e-5)
    counted, _ = sample_with_capture(run_node, model, families, capture, positive, negative, latent, everything,
                                     spatial_only=True)
    assert torch.equal(counted.maps.map(0), ones)

    words = tuple(range(8))
    foreign = RecordingOverride()
    patched = model.clone()
    calls = []
    patched.set_model_unet_function_wrapper(
        lambda apply_model, args: calls.append(1) or apply_model(args["input"], args["timestep"], **args["c"]))
    request, _ = sample_with_capture(run_node, patched, families, capture, positive, negative, latent,
                                     {0: (words, 512)}, foreign=foreign)
    ours = request.maps.map(0)
    assert len(calls) == 1 and foreign.calls == 2 * len(model.model.diffusion_model.blocks)
    total, heads_total = torch.zeros(2, tokens), 0
    for chunks, q, k, heads in foreign.seen:
        if k.shape[1] != 512:
            continue                                            # the blocks' self-attention
        rows = slice(chunks.index(0) * 2, chunks.index(0) * 2 + 2)
        qh = q[rows].reshape(2, tokens, heads, -1).transpose(1, 2).float()
        kh = k[rows].reshape(2, 512, heads, -1).transpose(1, 2).float()
        probs = torch.softmax(qh @ kh.transpose(-1, -2) * qh.shape[-1] ** -0.5, dim=-1)
        total += probs[..., list(words)].sum(-1).sum(1)
        heads_total += heads
    assert torch.allclose(ours.reshape(2, -1), total / heads_total, atol=1e-5)
    assert bool((ours > 0).all()) and bool((ours < 1).all())
    after = run_node("KSampler", model=model, seed=1, steps=1, cfg=5.0, sampler_name="euler", scheduler="simple",
                     positive=positive, negative=negative, latent_image=latent, denoise=1.0)[0]["samples"]
    assert torch.equal(after, before)


def test_blocks_auto_is_the_last_two_thirds(load_wan, families):
    import types
    blocks = lambda n: types.SimpleNamespace(blocks=[None] * n)
    assert list(families.WAN.default_blocks(blocks(30))) == list(range(10, 30))     # 1.3B, 5B
    assert list(families.WAN.default_blocks(blocks(40))) == list(range(13, 40))     # 14B
    assert list(families.WAN.default_blocks(load_wan("wan21")[0].model.diffusion_model)) == [1]


def _refused_video_model(tiny, kind):
    """A bare tiny network of a video model LEDITS++ refuses (only the refusal is tested)."""
    import dataclasses

    import comfy.ldm.hunyuan_video.model
    import comfy.supported_models as supported
    wan = {"image_model": "wan2.1", "dim": 64, "ffn_dim": 128, "freq_dim": 256, "text_dim": 64, "num_heads": 2,
           "num_layers": 1, "out_dim": 16}
    fields = {f.name for f in dataclasses.fields(comfy.ldm.hunyuan_video.model.HunyuanVideoParams)}
    hunyuan = {"image_model": "hunyuan_video", "in_channels": 16, "out_channels": 16, "vec_in_dim": 64,
               "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
               "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 256, "patch_size": [1, 2, 2],
               "qkv_bias": True, "guidance_embed": True, "byt5": False, "meanflow": False,
               "use_cond_type_embedding": False, "vision_in_dim": None, "meanflow_sum": False}
    configs = {
        "wan21_i2v": (supported.WAN21_I2V, dict(wan, model_type="i2v", in_dim=36)),
        "wan21_vace": (supported.WAN21_Vace, dict(wan, model_type="vace", in_dim=16, vace_layers=1, vace_in_dim=96)),
        "wan21_camera": (supported.WAN21_Camera, dict(wan, model_type="camera", in_dim=32,
                                                      in_dim_control_adapter=24)),
        "ltxv": (supported.LTXV, {"in_channels": 128, "cross_attention_dim": 64, "attention_head_dim": 32,
                                  "num_attention_heads": 2, "caption_channels": 64, "num_layers": 1}),
        "hunyuan_video": (supported.HunyuanVideo, {k: v for k, v in hunyuan.items()
                                                   if k in fields or k == "image_model"}),
    }
    return tiny.dit.bare_model(*configs[kind])


@pytest.mark.parametrize("kind, why", [("wan21_i2v", "image-to-video / control variant of WAN (36 input channels"),
                                       ("wan21_vace", "WAN variant that also conditions"),
                                       ("wan21_camera", "WAN variant that also conditions"),
                                       ("ltxv", "video model LEDITS++ does not edit yet"),
                                       ("hunyuan_video", "video model LEDITS++ does not edit yet")])
def test_other_video_models_are_refused_naming_what_works(comfy_host, run_node, kind, why):
    """WAN image-to-video (extra input channels), VACE and camera (extra conditioning), LTX-Video and
    HunyuanVideo: Inversion and Attention Capture refuse them and name the supported families."""
    model = _refused_video_model(comfy_host["tiny"], kind)
    calls = {"LEditsPPInversion": dict(model=model, latent=video_latent("wan21", 1, 2, 8, 8), steps=3, skip=0.0,
                                       seed=0, schedule="exact", source_cfg=3.5),
             "LEditsPPAttentionCapture": dict(model=model, resolution="latent/4", include_middle=False,
                                              blocks="auto")}
    for node, inputs in calls.items():
        with pytest.raises(ValueError, match="not supported") as error:
            run_node(node, **inputs)
        message = str(error.value)
        assert why in message and "WAN 2.1 / WAN 2.2 5B (text-to-video)" in message and "Flux.1" in message, message
