"""HiDream I1 (full, dev, fast): comfy.model_base.HiDream -> comfy/ldm/hidream/model.py, the same
code on every supported host. FLOW sampling (the class's default: shift 1.0, multiplier 1000);
real CFG (full: cfg 5; dev / fast are run at cfg 1).

Attention. Every block runs one joint attention, IMAGE FIRST: block i (16 double-stream, then 32
single-stream blocks at full size) attends [image; T5 (128); Llama last layer (L); Llama layer
`llama_layers[i]` (L)] through the host's attention as (B, tokens, heads * dim), no mask. The host
gives attention no block labels and has no block patches, so the chosen blocks are found by the
order of the calls (nodes/dit_call_order.py).

Text. CLIP-L + CLIP-G give the pooled vector only; `context` = the first 128 T5-XXL tokens (padded
with 0); `conditioning_llama3` = the hidden states of every Llama-3.1-8B layer, (B, 32, L, 4096),
L >= 128 (BOS kept at 0, padded with 128009). No template.

Which tokens the mask reads: the concept's tokens in all three text streams (T5, Llama last
layer, Llama layer i), summed. The three carry the same words, and how a trained model splits its
attention between them is learned and differs by block (Llama feeds every block by layer; T5 and
the last Llama layer are also updated by the double blocks). Users' ablations report that HiDream's
image follows Llama (Llama alone gives nearly the same image; T5 + CLIP without Llama do not), so a
T5-only mask would read the weaker stream, and a Llama-only one would drop whatever T5 adds. On
tiny random models the streams' maps hardly agree (T5 vs Llama: correlation -0.09..0.30; Llama
last vs layer i: 0.34..0.54, 3 seeds), so the choice matters. The sum weighs each stream by the
attention the model gives it: the mask follows whichever encoder the model listens to, without
assuming one, as the SD3 family sums its CLIP and T5 streams. A stream whose encoder is not loaded
(HiDreamTEModel then gives zeros) adds no positions.

Unconditional prediction without a `negative`: zeros of the shape of an encoded empty prompt (128
T5 tokens, Llama states of 128 tokens for every layer the model reads, zero pooled vector), as
for the other families: Inversion and the edit nodes have no CLIP to encode "" with. The text
projections have no bias, so zeros carry no content. Connect CLIP Text Encode "" (or the
negative prompt of the full model's template) as `negative` for the model's own unconditional.

`auto` blocks: Flux.1's rule, every double-stream block plus the second half of the single-stream
ones (full size: 0-15 and 32-47, 32 of 48 blocks), measured on trained tiny HiDream models
(bench/dit_block_new_layouts.md): IoU 0.573 vs 0.574 for every block (-0.001 +- 0.001 over 2
seeds); double only -0.009, single only -0.035, the MMDiT rule over the run order -0.035.
"""
import math
import types

import torch

import comfy.text_encoders.hidream

from ...ledits_core import attention_grid, concept_token_positions
from .. import dit_call_order
from ..dit_capture import JointCaptureRequest, TokenLayout
from .base import JointDiTFamily
from .flux import FLUX

T5_TOKENS = 128         # HiDreamTokenizer keeps the first 128 T5 tokens, padded to 128
LLAMA_MIN_TOKENS = 128  # and pads the Llama tokens (BOS included) to at least 128
FORWARD_INPUTS = ("x", "t", "y", "context", "encoder_hidden_states_llama3", "image_cond")  # the network's


class HiDreamFamily(JointDiTFamily):
    name = "HiDream I1 (full, dev, fast)"
    host_classes = ("HiDream",)

    def joint_blocks(self, diffusion_model):
        return ([("double_block", i) for i in range(len(diffusion_model.double_stream_blocks))]
                + [("single_block", i) for i in range(len(diffusion_model.single_stream_blocks))])

    def default_blocks(self, diffusion_model):
        return FLUX.default_blocks(types.SimpleNamespace(double_blocks=diffusion_model.double_stream_blocks,
                                                         single_blocks=diffusion_model.single_stream_blocks))

    def context_width(self, model):
        """The T5 width (the CONDITIONING tensor); the last caption projection reads it."""
        return model.model.diffusion_model.caption_projection[-1].linear.in_features

    def zero_conditioning(self, model):
        network = model.model.diffusion_model
        pooled = network.p_embedder.pooled_embedder.linear_1.in_features
        llama = torch.zeros(1, max(network.llama_layers) + 1, LLAMA_MIN_TOKENS,
                            network.caption_projection[0].linear.in_features)
        return [[torch.zeros(1, T5_TOKENS, self.context_width(model)),
                 {"pooled_output": torch.zeros(1, pooled), "conditioning_llama3": llama}]]

    def concept_layout(self, clip, tokens):
        """Positions in [context (128 T5 tokens); Llama tokens]: the T5 ones below 128, the Llama
        ones from 128 on; the context length is the T5 context's (the CONDITIONING tensor's).
        Each stream only if its encoder is loaded."""
        encoder = clip.cond_stage_model
        if not isinstance(encoder, comfy.text_encoders.hidream.HiDreamTEModel):
            return None
        positions = []
        if encoder.t5xxl is not None:
            positions += concept_token_positions(tokens["t5xxl"], chunk_length=None)
        if encoder.llama is not None:
            positions += [T5_TOKENS + p for p in concept_token_positions(tokens["llama"], chunk_length=None)]
        if not positions:
            raise ValueError("this HiDream CLIP has neither T5 nor Llama loaded, so the concept's tokens are "
                             "nowhere in the model's text; load the T5 and Llama text encoders")
        return positions, T5_TOKENS

    def token_layout(self, diffusion_model, args, kwargs):
        """[image; T5; Llama last layer; Llama layer i] from the forward's x, context and Llama
        states; None with an E1 `image_cond` (refused before: it widens the image)."""
        inputs = dict(zip(FORWARD_INPUTS, args), **{k: v for k, v in kwargs.items() if k in FORWARD_INPUTS})
        context, llama = inputs.get("context"), inputs.get("encoder_hidden_states_llama3")
        if context is None or llama is None or inputs.get("image_cond") is not None:
            return None
        image = math.prod(attention_grid(inputs["x"].shape[-2:], int(diffusion_model.patch_size)))
        text = context.shape[1] + 2 * llama.shape[2]
        return TokenLayout(image + text, text_start=image, text_length=text, image_start=0)

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        return HiDreamCaptureRequest(concepts, attention_grid(latent_size, int(diffusion_model.patch_size)))

    def install_capture(self, model_options, diffusion_model, config):
        return dit_call_order.install_capture(model_options, self, diffusion_model, config)


class HiDreamCaptureRequest(JointCaptureRequest):
    def concept_tokens(self, index, layout):
        """The concept's [context; Llama] positions (concept_layout) among a block's text keys
        [T5; Llama last layer; Llama layer i]: its T5 tokens, and its Llama tokens in both Llama
        streams (each of this call's Llama length)."""
        positions, context_length = self.concepts[index]
        llama = (layout.text_length - context_length) // 2
        t5 = [p for p in positions if p < context_length]
        words = [p - context_length for p in positions if p >= context_length]
        return (tuple(t5 + [context_length + p for p in words] + [context_length + llama + p for p in words]),
                layout.text_length)


HIDREAM = HiDreamFamily()
