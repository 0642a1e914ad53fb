"""Z-Image (Turbo, base; ComfyUI 0.33+) and Lumina 2 (both hosts): comfy.model_base.Lumina2 ->
NextDiT (comfy/ldm/lumina/model.py). One stream: a text refiner and an image refiner run on each
stream alone, then every main layer attends jointly over [text; image], text first. Z-Image pads
each stream to a multiple of 32 with learned pad tokens. Context = an LLM's hidden states: Z-Image
Qwen3-4B behind a chat template (the prompt sits between its 3-token head and 5-token tail),
Lumina 2 Gemma-2-2B after BOS (no template). Real CFG; Z-Image Turbo is step-distilled and run at
cfg 1 (~8 steps).

NextDiT gives its layers no "dit" replace patch, so blocks are placed by counting its joint calls
(nodes/dit_call_order.py): `token_layout` says which calls are joint and where their tokens sit.

Unconditional prediction without a `negative`: zeros as long as an empty prompt's encoding (Z-Image
8 tokens, the bare template; Lumina 2 1 token, BOS), i.e. ComfyUI's ConditioningZeroOut of CLIP Text
Encode "" -- the zeroed negative Z-Image Turbo's own template uses. At cfg 1 ComfyUI never evaluates
that negative; LEDITS++ needs it as the direction every concept is measured from and as the
prediction the image is inverted and replayed with (no positive: the base is this prediction, so
the replay stays exact). Zeros carry no content (every token becomes the text embedder's bias).
Connect CLIP Text Encode "" as `negative` for the model's encoded empty prompt instead.
"""
import torch

import comfy.supported_models
import comfy.text_encoders.lumina2

from ..dit_call_order import install_capture as install_call_order_capture
from ..dit_capture import TokenLayout
from ...ledits_core import concept_token_positions
from .base import JointDiTFamily
from .flux2 import prompt_positions

try:
    import comfy.text_encoders.z_image as z_image_text
except ImportError:         # ComfyUI < 0.33: no Z-Image
    z_image_text = None

EMPTY_PROMPT_TOKENS = {"zimage": 8, "lumina2": 1}   # "" -> the bare chat template / BOS


class Lumina2Family(JointDiTFamily):
    host_classes = ("Lumina2", "ZImagePixelSpace")

    @property
    def name(self):
        has_z_image = hasattr(comfy.supported_models, "ZImage")
        return "Z-Image (Turbo, base) and Lumina 2" if has_z_image else "Lumina 2"

    def unsupported_variant(self, diffusion_model):
        if hasattr(diffusion_model, "dec_net"):
            return ("is not supported: it is Z-Image's pixel-space variant (it denoises RGB patches, no "
                    "VAE latent); use the latent Z-Image (Turbo or base)")
        return super().unsupported_variant(diffusion_model)

    def joint_blocks(self, diffusion_model):
        """The main layers, all joint; the refiner layers (one stream each) are never captured."""
        return [("layer", i) for i in range(len(diffusion_model.layers))]

    def default_blocks(self, diffusion_model):
        """Every main layer (Z-Image 30: 0-29; Lumina 2 26: 0-25). Measured on trained tiny NextDiTs
        (bench/dit_block_new_layouts.md): the first main layers localise well here, since the text
        has passed its refiner layers before them, and the last two thirds (SD3's rule) lost 0.06
        IoU against all layers (in both seeds); no subset matched all."""
        return range(len(diffusion_model.layers))

    def token_layout(self, diffusion_model, args, kwargs):
        """Where the joint calls' tokens sit in the forward(x, timesteps, context, ...) called with
        args/kwargs: [text; pad; image; pad], each stream padded to the model's multiple (Z-Image
        32, Lumina 2 none); the image's patches row-major (latent padded up to the patch size).
        0.3.64 joins num_tokens text tokens (the ones of the text's attention mask): the whole
        context for the unpadded prompts ComfyUI's Lumina 2 text encoder gives."""
        x = _argument(args, kwargs, 0, "x")
        context = _argument(args, kwargs, 2, "context")
        if x is None or context is None:
            return None
        multiple = getattr(diffusion_model, "pad_tokens_multiple", None) or 1
        patch = diffusion_model.patch_size
        image = _round_up(x.shape[-2], patch) // patch * (_round_up(x.shape[-1], patch) // patch)
        text = context.shape[1]
        text_padded = _round_up(text, multiple)
        return TokenLayout(length=text_padded + _round_up(image, multiple), text_start=0, text_length=text,
                           image_start=text_padded)

    def install_capture(self, model_options, diffusion_model, config):
        return install_call_order_capture(model_options, self, diffusion_model, config)

    def context_width(self, model):
        return model.model.diffusion_model.cap_embedder[1].in_features

    def zero_conditioning(self, model):
        """See the module docstring. The attention mask (all ones) gives the model its num_tokens."""
        tokens = EMPTY_PROMPT_TOKENS["zimage" if _is_z_image(model) else "lumina2"]
        return [[torch.zeros(1, tokens, self.context_width(model)),
                 {"attention_mask": torch.ones(1, tokens, dtype=torch.long)}]]

    def concept_layout(self, clip, tokens):
        """Z-Image: the prompt's tokens between the chat template's head and tail (found against the
        template's tokenization of an empty prompt; the tokenizer gives template and prompt the same
        word id). Lumina 2: every token after BOS (word id 0)."""
        encoder = clip.cond_stage_model
        if z_image_text is not None and isinstance(encoder, z_image_text.ZImageTEModel):
            (key, chunks), = tokens.items()
            stream = [item for chunk in chunks for item in chunk]
            template = [item for chunk in clip.tokenize("", return_word_ids=True)[key] for item in chunk]
            return prompt_positions(stream, template), len(stream)
        if isinstance(encoder, comfy.text_encoders.lumina2.LuminaModel):
            (stream,) = tokens.values()
            return concept_token_positions(stream, chunk_length=None), sum(len(chunk) for chunk in stream)
        return None


def _is_z_image(model):
    return any(cls.__name__ == "ZImage" for cls in type(model.model.model_config).__mro__)


def _argument(args, kwargs, index, name):
    return args[index] if len(args) > index else kwargs.get(name)


def _round_up(n, multiple):
    return -(-int(n) // multiple) * multiple


LUMINA2 = Lumina2Family()
