"""SD1.x / SD2.x (eps or v) / SDXL UNets: VE noise, cross-attention (attn2) capture, CLIP chunks."""
import torch

import comfy.model_base
import comfy.model_sampling

from ...ledits_core import VE, concept_token_positions
from .. import unet_capture
from ..unet_capture import UNetCaptureRequest
from .base import Family


class UNetFamily(Family):
    name = "SD1.x, SD2.x (eps or v-prediction) and SDXL UNets"
    form = VE

    @property
    def available(self):
        return True

    def is_member(self, model):
        sampling = model.get_model_object("model_sampling")
        return (isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete)
                and not isinstance(sampling, comfy.model_sampling.StableCascadeSampling)
                and isinstance(sampling, comfy.model_sampling.EPS)
                and not isinstance(sampling, (comfy.model_sampling.X0, comfy.model_sampling.EDM))
                and type(model.model.diffusion_model).__name__ == "UNetModel")

    def context_width(self, model):
        return model.model.model_config.unet_config.get("context_dim")

    def zero_conditioning(self, model):
        """Zeros (tokens and pooled): the unconditional input diffusers uses for SDXL."""
        config = model.model.model_config.unet_config
        extras = {}
        if isinstance(model.model, comfy.model_base.SDXL):
            extras["pooled_output"] = torch.zeros(1, config["adm_in_channels"] - 6 * 256)
        elif config.get("adm_in_channels"):
            raise ValueError("LEDITS++: this model needs extra conditioning; connect a `negative` "
                             "CONDITIONING (e.g. CLIP Text Encode with an empty prompt)")
        return [[torch.zeros(1, 77, self.context_width(model)), extras]]

    def concept_layout(self, clip, tokens):
        """CLIP: 77-token chunks of one stream (SDXL's two encoders share positions). The fallback
        for any CLIP no other family claims."""
        stream = tokens["l"] if "l" in tokens else next(iter(tokens.values()))
        return concept_token_positions(stream), 77 * len(stream)

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        return UNetCaptureRequest(concepts, latent_size, config)

    def install_capture(self, model_options, diffusion_model, config):
        return unet_capture.install_capture(model_options, diffusion_model, config)


UNET = UNetFamily()
