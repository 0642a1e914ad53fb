"""LEditsPPEditConcept: one text concept to add or remove, chainable into a list."""
from comfy_api.latest import io

from ..ledits_core import EditConcept
from ..ledits_core.guidance import MASK_TYPES
from .families import concept_layout
from .io_types import CATEGORY, Concepts
from .values import ConceptSpec

NODE = "LEDITS++ Edit Concept"
NEVER = 10000


def encode_concept(clip, text):
    """CONDITIONING of `text` plus the positions of its own tokens in the model's text context
    (laid out per text encoder by its family: nodes/families/<family>.py, concept_layout)."""
    positions, length = concept_layout(clip, clip.tokenize(text, return_word_ids=True))
    plain = clip.tokenize(text)
    if hasattr(clip, "encode_from_tokens_scheduled"):
        conditioning = clip.encode_from_tokens_scheduled(plain)
    else:
        out = clip.encode_from_tokens(plain, return_pooled=True, return_dict=True)
        conditioning = [[out.pop("cond"), out]]
    got = conditioning[0][0].shape[1]
    if got != length:
        raise ValueError(f"this CLIP ({type(clip.cond_stage_model).__name__}) gives {got} text tokens where "
                         f"LEDITS++ expects {length}; its token layout is unknown, so concept masks cannot "
                         "be placed. Use the text encoders of a supported model family")
    return conditioning, tuple(positions), length


class LEditsPPEditConcept(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPEditConcept",
            display_name="LEDITS++ Edit Concept",
            category=CATEGORY,
            description="One edit instruction (e.g. + 'glasses', - 'cat', + 'watercolor'). Chain several "
                        "through `concepts`; each is applied inside its own mask.",
            inputs=[
                io.Clip.Input("clip", tooltip="The CLIP (text encoders) of the model you edit with."),
                io.String.Input("text", default="", placeholder="glasses",
                                tooltip="What to add (or remove). Short phrases work best; ComfyUI prompt "
                                        "weights like (word:1.2) apply."),
                io.Float.Input("scale", default=5.0, min=0.0, max=50.0, step=0.1,
                               tooltip="Edit strength. 5-10 for objects and faces, up to 15 for big changes."),
                io.Float.Input("threshold", default=0.9, min=0.0, max=1.0, step=0.01,
                               tooltip="Mask threshold: about (1 - threshold) of the image is edited. 0.9 for "
                                       "objects, 0.5 or less for style."),
                io.Boolean.Input("reverse", default=False, label_on="remove (-)", label_off="add (+)",
                                 tooltip="Off: steer towards the concept. On: steer away from it (remove)."),
                io.Int.Input("warmup", default=0, min=0, max=1000,
                             tooltip="First step (counted after skip) at which this concept is applied."),
                io.Int.Input("cooldown", default=NEVER, min=0, max=NEVER,
                             tooltip=f"Step from which the concept is no longer applied; {NEVER} = never stop."),
                io.Combo.Input("mask_type", options=list(MASK_TYPES), default="intersect",
                               tooltip="intersect: attention mask AND noise mask (LEDITS++). attention: the "
                                       "attention mask only (UNets, WAN: cross-attention; other DiTs: joint "
                                       "attention). noise: guidance magnitude only. none: unmasked."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional user mask limiting where this concept may act: one, or one per "
                                      "image of the batch; on a clip it applies to every frame."),
                Concepts.Input("concepts", optional=True, tooltip="Earlier concepts to append this one to."),
            ],
            outputs=[Concepts.Output(display_name="concepts", tooltip="The concept list so far.")],
        )

    @classmethod
    def execute(cls, clip, text, scale, threshold, reverse, warmup, cooldown, mask_type,
                mask=None, concepts=None) -> io.NodeOutput:
        if clip is None:
            raise ValueError(f"{NODE}: connect a CLIP (the checkpoint loader's CLIP output)")
        if not text or not text.strip():
            raise ValueError(f"{NODE}: the concept text is empty; type what to add or remove, e.g. 'glasses'")
        try:
            params = EditConcept(scale=float(scale), reverse=bool(reverse), warmup=int(warmup),
                                 cooldown=None if cooldown >= NEVER else int(cooldown),
                                 threshold=float(threshold), mask_type=mask_type)
            conditioning, positions, context_length = encode_concept(clip, text.strip())
        except ValueError as error:
            raise ValueError(f"{NODE}: {error}") from error
        if mask is not None and mask.ndim == 2:
            mask = mask[None]
        spec = ConceptSpec(text=text.strip(), conditioning=conditioning, token_positions=positions,
                           context_length=context_length, params=params,
                           user_mask=None if mask is None else mask.float().cpu())
        return io.NodeOutput(tuple(concepts or ()) + (spec,))
