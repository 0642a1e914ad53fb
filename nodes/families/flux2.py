"""Flux.2 (comfy.model_base.Flux2, ComfyUI 0.33+): Flux.1's attention path (double then single
blocks, [text; image], text first) with 128 latent channels at /16 and patch 1. Context = three
hidden layers of an LLM side by side, behind a chat template:

* klein 4B / 9B (Qwen3): "<|im_start|>user\\n{prompt}<|im_end|>..." right-padded to 512 tokens;
  base is run with real CFG, the step-distilled models at cfg 1.
* dev (Mistral 3): "[SYSTEM_PROMPT]...[INST]{prompt}[/INST]", not padded by the tokenizer;
  model_base.Flux2 left-pads every context shorter than 512 with zero vectors, so the prompt's
  positions in the model's context shift with the prompt's length. Guidance-distilled like
  Flux.1 dev (one `guidance` value for every prediction).
"""
import torch

import comfy.text_encoders.flux

from .flux import FluxFamily

MODEL_CONTEXT = 512     # model_base.Flux2 left-pads shorter contexts with zeros to this length


class Flux2Family(FluxFamily):
    name = "Flux.2 (dev, klein 4B / 9B)"
    host_classes = ("Flux2",)
    text_encoder = getattr(comfy.text_encoders.flux, "Flux2TEModel", ())   # klein and dev; 0.33+

    def default_blocks(self, diffusion_model):
        """Flux.1's rule (every double block and the second half of the single ones; dev's 8 + 48
        blocks: 0-7 and 32-55). Flux.2 runs the same two stages of joint attention over
        [text; image] in the same order with the same block code, only with fewer double blocks,
        and the rule is stated per stage, so it carries over at any depth. Checked on trained tiny
        Flux-style DiTs with Flux.2's ratio of 2 double to 8 single blocks
        (bench/dit_block_new_layouts.md): +0.000 / -0.013 IoU vs every block in 2 seeds."""
        return super().default_blocks(diffusion_model)

    def zero_conditioning(self, model):
        """512 zero tokens: what model_base.Flux2 makes of any all-zero context (it left-pads with
        zeros), and what ConditioningZeroOut gives for klein's empty prompt (the distilled
        klein templates' negative). No pooled vector: Flux.2 has no vector_in."""
        return [[torch.zeros(1, MODEL_CONTEXT, self.context_width(model)), {"pooled_output": None}]]

    def concept_layout(self, clip, tokens):
        """The prompt's own tokens between the chat template's head and tail (found against the
        template's tokenization of an empty prompt), in the conditioning's coordinates; its
        length is the conditioning's (klein >= 512, dev as tokenized)."""
        if not isinstance(clip.cond_stage_model, self.text_encoder):
            return None
        (key, chunks), = tokens.items()
        stream = [item for chunk in chunks for item in chunk]
        template = [item for chunk in clip.tokenize("", return_word_ids=True)[key] for item in chunk]
        return prompt_positions(stream, template), len(stream)

    def capture_request(self, concepts, latent_size, config, diffusion_model):
        """Concept positions moved to where the model sees them: behind the left padding of a
        context shorter than 512 (dev)."""
        padded = {}
        for index, (positions, length) in concepts.items():
            shift = max(0, MODEL_CONTEXT - length)
            padded[index] = ([p + shift for p in positions], length + shift)
        return super().capture_request(padded, latent_size, config, diffusion_model)


def prompt_positions(stream, template):
    """Positions in `stream` ((token, weight, word_id) items) of the prompt's tokens: the template
    tokens (word id != 0: BOS and padding have 0) that the empty prompt's `template` has in common
    at the head and at the tail are left out."""
    content = [p for p, item in enumerate(stream) if item[2] != 0]
    ids = [stream[p][0] for p in content]
    empty = [item[0] for item in template if item[2] != 0]
    head = 0
    while head < min(len(ids), len(empty)) and ids[head] == empty[head]:
        head += 1
    tail = 0
    while tail < min(len(ids), len(empty)) - head and ids[-1 - tail] == empty[-1 - tail]:
        tail += 1
    positions = content[head:len(content) - tail]
    if not positions:
        raise ValueError("the concept text has no tokens; enter a word or phrase to edit with")
    return positions


FLUX2 = Flux2Family()
