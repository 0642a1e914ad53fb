"""Fixtures for the core tier: a deterministic toy denoiser and the SD sigma table."""
import math
import zlib

import pytest
import torch


def sd_sigma_table():
    """SD1.x/SDXL 'scaled linear' training sigmas (float64 build, float32 store, as ComfyUI)."""
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()


class ToyDenoiser:
    """A smooth, deterministic stand-in for D(x, sigma, cond): eps = tanh(W x c_in + b + cond) + ..."""

    def __init__(self, channels=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(channels, channels, generator=g) * 0.5
        self.b = torch.randn(channels, generator=g) * 0.1
        self.cond = {}
        self.seed = seed

    def cond_vector(self, name):
        if name not in self.cond:
            g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:{name}".encode()))
            self.cond[name] = torch.randn(self.w.shape[0], generator=g)
        return self.cond[name]

    def eps(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype)
        h = x / torch.sqrt(sigma ** 2 + 1)
        mix = torch.einsum("oc,bchw->bohw", self.w.to(x.dtype), h) + self.b.to(x.dtype)[:, None, None]
        if cond is not None:
            mix = mix + self.cond_vector(cond).to(x.dtype)[:, None, None] * torch.cos(h)
        return torch.tanh(mix) + 0.3 * h.roll(1, dims=-1) + 0.05 * torch.sin(sigma) * h

    def __call__(self, x, sigma, cond=None):
        return x - torch.as_tensor(sigma, dtype=x.dtype) * self.eps(x, sigma, cond)


@pytest.fixture(scope="session")
def sigma_table():
    return sd_sigma_table()


@pytest.fixture
def toy():
    return ToyDenoiser()


@pytest.fixture
def latent():
    def make(batch=1, h=8, w=8, seed=1, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(batch, 4, h, w, generator=g).to(dtype)
    return make
