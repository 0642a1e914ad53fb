"""Deterministic random weights of the real SD1.5 architecture, saved as a diffusers folder that
both diffusers and ComfyUI load (no hub download), and the benchmark's test image."""
import time

import torch

from bench_measure import free

UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
CLIP_CONFIG = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    algorithm_type="sde-dpmsolver++", solver_order=2, steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def fix_text_encoder_keys(folder):
    """transformers 5 saves CLIPTextModel keys without the `text_model.` prefix; SD1.5 folders (and
    ComfyUI's loader) use it. Both transformers versions load the prefixed form."""
    from safetensors.torch import load_file, save_file
    path = folder / "text_encoder" / "model.safetensors"
    sd = load_file(str(path))
    if all(k.startswith("text_model.") or k == "text_projection.weight" for k in sd):
        return
    save_file({(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()}, str(path),
              metadata={"format": "pt"})


def touch(modules):
    """Read every parameter once (pages of mmapped weights become resident); returns their bytes."""
    total = 0
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                t.sum()
                total += t.numel() * t.element_size()
    return total


def build_weights(folder, seed, tokenizer_dir):
    """Random SD1.5-architecture weights (diffusers layout), built deterministically from `seed`;
    the CLIP tokenizer files come from `tokenizer_dir` (ComfyUI's comfy/sd1_tokenizer)."""
    marker = folder / f"seed_{seed}.done"
    if marker.exists():
        fix_text_encoder_keys(folder)
        return
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    UNet2DConditionModel(**UNET_CONFIG).save_pretrained(folder / "unet")
    free()
    torch.manual_seed(seed + 1)
    AutoencoderKL(**VAE_CONFIG).save_pretrained(folder / "vae")
    torch.manual_seed(seed + 2)
    CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)).save_pretrained(folder / "text_encoder")
    CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77).save_pretrained(folder / "tokenizer")
    DPMSolverMultistepScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items()
                                   if k not in ("clip_sample", "set_alpha_to_one")}).save_pretrained(folder / "scheduler")
    fix_text_encoder_keys(folder)
    marker.write_text("ok")
    free()
    print(f"built random SD1.5 weights in {folder} ({time.perf_counter() - t0:.1f} s)", flush=True)


def test_image(size):
    """A smooth deterministic RGB image in [0, 1], (size, size, 3)."""
    gen = torch.Generator().manual_seed(1234)
    low = torch.rand(1, 3, 8, 8, generator=gen)
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.rand(1, 3, size, size, generator=gen)
    return img.clamp(0, 1)[0].permute(1, 2, 0).contiguous()
