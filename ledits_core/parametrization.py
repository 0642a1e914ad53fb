"""How a noisy latent is made from the clean one: x_sigma = alpha(sigma) x0 + sigma eps.

Two forms cover ComfyUI's image models (`comfy.model_sampling`):
* VE: alpha = 1. eps and v-prediction models in k-diffusion's form (SD1.x, SD2.x, SDXL).
* FLOW: alpha = 1 - sigma, sigma in (0, 1). Rectified-flow models (`CONST`: SD3, Flux, ...).

Everything the solver needs follows from alpha and sigma through the half-log-SNR
lambda = log(alpha / sigma), as in ComfyUI's `sample_dpmpp_2m_sde`. Formulas are written so that
alpha = 1 multiplies nothing: VE results stay bit for bit what they were before FLOW existed.
"""
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Parametrization:
    name: str

    @property
    def is_flow(self):
        return self.name == "flow"

    @property
    def max_sigma(self):
        """Sigmas must stay below this (FLOW: sigma = 1 is pure noise, alpha = 0, lambda = -inf)."""
        return 1.0 if self.is_flow else math.inf

    def alpha(self, sigma):
        return 1.0 - sigma if self.is_flow else 1.0

    def half_log_snr(self, sigma):
        """lambda = log(alpha / sigma), in float64."""
        if self.is_flow:
            return math.log1p(-sigma) - math.log(sigma)
        return -math.log(sigma)

    def scale_clean(self, x0, sigma):
        """alpha * x0 (x0 itself for VE, so that nothing is rounded)."""
        return x0 if not self.is_flow else x0 * (1.0 - sigma)

    def eps_from_denoised(self, x, denoised, sigma):
        """The noise prediction that goes with a denoised (x0) prediction; sigma (B, 1, ...)."""
        if not self.is_flow:
            return (x - denoised) / sigma
        return (x - (1.0 - sigma) * denoised) / sigma

    def denoised_from_eps(self, x, eps, sigma):
        if not self.is_flow:
            return x - eps * sigma
        return (x - eps * sigma) / (1.0 - sigma)


VE = Parametrization("ve")
FLOW = Parametrization("flow")
