"""A tiny VAE for the shapes world in ComfyUI's TAESD layout (4 channels for the UNet, 16 for DiTs,
128 at /16 for Flux.2: ComfyUI's "taef2", 32 channels at /8 patchified 2 x 2).

Encoder: constructed, not trained. Its weights make it exactly an 8x8 cell average of the RGB
picture followed by a fixed linear colour map (`colour_map`): the residual blocks' convolutions
are zero (a block is then ReLU(x) = x on non-negative inputs), each stride-2 convolution is a 2x2
average, the last convolution is the colour map. So training data for the denoisers is computed
analytically (`latent_of`) and equals what VAE Encode gives (checked in `check_encoder`).
Decoder: starts as the inverse (nearest upsampling of the cell colour, ReLU +/- split) and is then
trained on the world's pictures to draw sharp edges from the cell averages.

vae_scale / vae_shift are set to the family's latent format, so that the MODEL sees exactly the
encoder output e (unit-ish scale): SD1.5 0.18215 / 0; SD3 1.5305 / 0.0609; Flux.2 1 / 0.
"""
import time

import torch
import torch.nn.functional as F

import comfy.taesd.taesd

from shapes_world import training_batch

LATENT_FORMAT = {4: (0.18215, 0.0), 16: (1.5305, 0.0609), 128: (1.0, 0.0)}   # (vae_scale, vae_shift): SD1.5, SD3, Flux.2
CELL = 8


def cell_channels(channels):
    """Channels per 8 x 8 cell: taef2's 128 are 32 per cell, patchified 2 x 2."""
    return 32 if channels == 128 else channels


def patchify(latent):
    """(B, 32, h, w) -> (B, 128, h/2, w/2) as ComfyUI's taef2 encoder packs its output."""
    b, c, h, w = latent.shape
    return latent.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def colour_map(channels):
    """e = W (rgb - 0.5): W has orthonormal columns (seeded) times a gain that gives every latent
    channel a standard deviation of about 0.6 on the world's pictures."""
    q, _ = torch.linalg.qr(torch.randn(channels, 3, generator=torch.Generator().manual_seed(channels)))
    return q * (2.4 * (channels / 3) ** 0.5)


def cells(latent):
    """A latent as (B, colour code, H/8, W/8): taef2's 2 x 2 packing undone, a video's one frame."""
    if latent.ndim == 5:
        latent = latent[:, :, 0]
    if latent.shape[1] != 128:
        return latent
    b, c, h, w = latent.shape
    return latent.reshape(b, 32, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, 32, 2 * h, 2 * w)


def latent_of(images, channels):
    """What the encoder computes, analytically: (B, 3, H, W) in [0, 1] -> (B, C, H/8, W/8)."""
    latent = torch.einsum("kc,bchw->bkhw", colour_map(cell_channels(channels)), F.avg_pool2d(images, CELL) - 0.5)
    return patchify(latent) if channels == 128 else latent


def _zero(module):
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def constructed_encoder(encoder, channels):
    _zero(encoder)                                        # also taef2's mid-block pools: x + 0
    w = colour_map(cell_channels(channels))
    with torch.no_grad():
        for c in range(3):
            encoder[0].weight[c, c, 1, 1] = 1.0
        for index in (2, 6, 10):                           # stride-2: 2x2 average of each channel
            for c in range(3):
                encoder[index].weight[c, c, 1:, 1:] = 0.25
        encoder[14].weight[:, :3, 1, 1] = w
        encoder[14].bias.copy_(-0.5 * w.sum(1))


def initial_decoder(decoder, channels, seed=0):
    """The inverse of the encoder up to the input clamp: +/- parts of each colour, nearest
    upsampling, identity blocks (their last convolution zero, the others random so they train;
    taef2's mid-block pools zero, their group norms the identity)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.linalg.pinv(colour_map(cell_channels(channels)))   # (3, C): rgb - 0.5 = p e
    with torch.no_grad():
        for m in decoder.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
        for block in (m for m in decoder if isinstance(m, comfy.taesd.taesd.Block)):
            block.conv[4].weight.zero_()
            if getattr(block, "pool", None) is not None:
                block.pool[3].weight.zero_()
        for m in decoder.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        first, last = decoder[1], decoder[19]
        first.weight.mul_(0.05)
        first.bias.fill_(0.05)
        for c in range(3):
            first.weight[2 * c, :, :, :] = 0
            first.weight[2 * c + 1, :, :, :] = 0
            first.weight[2 * c, :, 1, 1] = p[c]
            first.weight[2 * c + 1, :, 1, 1] = -p[c]
            first.bias[2 * c] = first.bias[2 * c + 1] = 0
        for index in (7, 12, 17):
            decoder[index].weight.zero_()
            decoder[index].weight[:, :, 1, 1] = torch.eye(64)
        last.weight.zero_()
        for c in range(3):
            last.weight[c, 2 * c, 1, 1], last.weight[c, 2 * c + 1, 1, 1] = 1.0, -1.0
        last.bias.fill_(0.5)


def build_taesd(channels, seed=0):
    taesd = comfy.taesd.taesd.TAESD(latent_channels=channels)
    constructed_encoder(taesd.taesd_encoder, channels)
    initial_decoder(taesd.taesd_decoder, channels, seed)
    scale, shift = LATENT_FORMAT[channels]
    with torch.no_grad():
        taesd.vae_scale.fill_(scale)
        taesd.vae_shift.fill_(shift)
    return taesd


def psnr(a, b):
    return float(10 * torch.log10(1.0 / F.mse_loss(a.clamp(0, 1), b)))


def train_decoder(taesd, channels, steps, batch, lr, seed, log=print):
    """Adam on the decoder alone, full 128 px pictures, MSE + L1. Returns (psnr before, after, s)."""
    g = torch.Generator().manual_seed(seed)
    decoder = taesd.taesd_decoder
    test = torch.stack([s.image for s in training_batch(8, torch.Generator().manual_seed(seed + 99))])
    test_latent = latent_of(test, channels)
    with torch.no_grad():
        before = psnr(decoder(test_latent), test)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, step / 20) * (0.5 + 0.5 * torch.cos(torch.tensor(step / steps * 3.1416)).item())
        images = torch.stack([s.image for s in training_batch(batch, g)])
        out = decoder(latent_of(images, channels))
        loss = F.mse_loss(out, images) + 0.1 * F.l1_loss(out, images)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps:
            log(f"  [vae{channels}] step {step} loss {float(loss):.5f} ({time.perf_counter() - t0:.0f} s)")
    with torch.no_grad():
        after = psnr(decoder(test_latent), test)
    return before, after, time.perf_counter() - t0


def check_encoder(vae, channels, images):
    """Max abs difference between ComfyUI's VAE Encode path and latent_of (in model space)."""
    scale, shift = LATENT_FORMAT[channels]
    raw = vae.encode(images.movedim(1, -1))               # ComfyUI takes (B, H, W, 3)
    return float(((raw - shift) * scale - latent_of(images, channels)).abs().max())
