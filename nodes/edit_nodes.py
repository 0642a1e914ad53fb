"""LEditsPPGuidedEdit (all-in-one) and LEditsPPGuider / LEditsPPSampler for SamplerCustomAdvanced."""
import torch
from comfy_api.latest import io

from .guider import LeditsGuider
from .families import distilled_guidance
from .host_model import check_conditioning, check_inversion_matches, check_model
from .io_types import CATEGORY, Attention, Concepts, Inversion
from .previews import mask_to_pixels, pixel_scale
from .samplers import replay_sampler, run_edit
from .ui_outputs import guided_edit_ui, safe
from .values import AttentionRecord, BaseGuidance


def edit_base(inversion, positive, negative, cfg, model):
    """The edit's base: the inversion's own guidance unless a target prompt or negative is given
    (keeping the inversion's makes 'no concepts' an exact reconstruction). The distilled guidance
    of a guidance-distilled model (Flux.1 / Flux.2 dev) always stays the inversion's."""
    if inversion is not None and positive is None and negative is None:
        return inversion.base
    family = check_model(model, "LEDITS++")
    for conditioning in (negative, positive):
        check_conditioning(conditioning, "LEDITS++")
    guidance = inversion.base.guidance if inversion is not None else \
        distilled_guidance(family, model, -1.0, negative, positive)
    if negative is None:
        negative = inversion.base.negative if inversion is not None else family.zero_conditioning(model)
    return BaseGuidance(negative=negative, positive=positive, cfg=float(cfg) if positive is not None else 1.0,
                        guidance=guidance)


def check_concepts(concepts, model, node, batch=None):
    width = check_model(model, node).context_width(model)
    for concept in concepts:
        mask = concept.user_mask
        if mask is not None and batch is not None and mask.shape[0] not in (1, batch):
            raise ValueError(
                f"{node}: the mask of concept '{concept.text}' has {mask.shape[0]} images but the image "
                f"batch has {batch}; give one mask, or one per image")
        got = concept.conditioning[0][0].shape[-1]
        if width is not None and got != width:
            raise ValueError(
                f"{node}: concept '{concept.text}' was encoded with a CLIP of width {got}, but this model "
                f"expects {width}; use the CLIP from the same checkpoint as the MODEL (separate files: that "
                "family's text encoders in the loader its templates use, e.g. DualCLIPLoader type flux, "
                "CLIPLoader type qwen_image)")


def edit_inputs(optional_inversion):
    inversion = Inversion.Input("inversion", optional=optional_inversion,
                                tooltip="From LEDITS++ Inversion (same model).")
    return [
        io.Model.Input("model", tooltip="The model the image was inverted with (patched clones are fine)."),
        inversion,
        Concepts.Input("concepts", optional=True,
                       tooltip="Edit concepts. None: the replay reconstructs the input exactly."),
        io.Conditioning.Input("positive", optional=True,
                              tooltip="Optional target prompt, applied with `cfg` on top of the edit."),
        io.Conditioning.Input("negative", optional=True,
                              tooltip="Optional unconditional prompt; default: the inversion's."),
        io.Float.Input("cfg", default=7.5, min=0.0, max=30.0, step=0.1,
                       tooltip="Scale of the target prompt (only used when `positive` is connected)."),
        io.Float.Input("guidance_rescale", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Rescale the guided prediction's std towards the concepts' (0 = off)."),
    ]


class LEditsPPGuidedEdit(io.ComfyNode):
    NODE = "LEDITS++ Guided Edit"

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPGuidedEdit",
            display_name="LEDITS++ Guided Edit",
            category=CATEGORY,
            description="Replays the inversion with semantic guidance: every concept is added or removed "
                        "inside its own mask. Decode the LATENT with VAE Decode.",
            inputs=edit_inputs(optional_inversion=False),
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The edited latent."),
                io.Mask.Output(display_name="masks",
                               tooltip="Where every concept edited: the cells inside its mask in at least 10 % of "
                                       "its active steps (concept-major: c0 img0, c0 img1, c1 ...); clips: one per "
                                       "latent frame (c0 img0 f0, c0 img0 f1, ...). Mask From Attention gives any "
                                       "single step's mask."),
                Attention.Output(display_name="attention",
                                 tooltip="Per-step attention maps and masks, for LEDITS++ Mask From Attention."),
            ],
        )

    @classmethod
    def execute(cls, model, inversion, cfg, guidance_rescale, concepts=None, positive=None,
                negative=None) -> io.NodeOutput:
        check_model(model, cls.NODE)
        check_inversion_matches(inversion, model, cls.NODE)
        concepts = tuple(concepts or ())
        check_concepts(concepts, model, cls.NODE, inversion.x_T.shape[0])
        base = edit_base(inversion, positive, negative, cfg, model)
        edited, guider = run_edit(model, inversion, concepts, base, guidance_rescale, record=True)
        latent_size = tuple(inversion.x_T.shape[-2:])
        never = torch.zeros(inversion.x_T.shape[0], 1, *inversion.x_T.shape[2:])   # (B, 1, [T,] H, W)
        edited_masks = guider.edited_masks
        final = [m if m is not None else never for m in edited_masks]
        scale = pixel_scale(model)
        masks = mask_to_pixels(torch.cat([m.cpu() for m in final]) if final else never, latent_size, scale)
        record = AttentionRecord(
            labels=tuple(c.label for c in concepts),
            thresholds=tuple(c.params.threshold for c in concepts),
            latent_size=latent_size,
            steps=tuple(tuple((None if a is None else a.cpu(), None if m is None else m.cpu())
                              for a, m in step) for step in guider.steps if step is not None),
            final_masks=tuple(None if m is None else m.cpu() for m in edited_masks), pixel_scale=scale)
        ui = safe(guided_edit_ui, model, edited, record, edited_masks)   # previews + step scrubber
        return io.NodeOutput({"samples": edited}, masks, record, ui=ui)


class LEditsPPGuider(io.ComfyNode):
    NODE = "LEDITS++ Guider"

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPGuider",
            display_name="LEDITS++ Guider",
            category=CATEGORY,
            description="The LEDITS++ edit as a GUIDER for SamplerCustomAdvanced. Pair it with LEDITS++ "
                        "Sampler, DisableNoise, and the inversion's noisy_latent and sigmas.",
            inputs=edit_inputs(optional_inversion=True),
            outputs=[io.Guider.Output(display_name="guider")],
        )

    @classmethod
    def execute(cls, model, cfg, guidance_rescale, inversion=None, concepts=None, positive=None,
                negative=None) -> io.NodeOutput:
        check_model(model, cls.NODE)
        if inversion is not None:
            check_inversion_matches(inversion, model, cls.NODE)
        concepts = tuple(concepts or ())
        check_concepts(concepts, model, cls.NODE, inversion.x_T.shape[0] if inversion is not None else None)
        base = edit_base(inversion, positive, negative, cfg, model)
        return io.NodeOutput(LeditsGuider(model, base, concepts, guidance_rescale, record=False))


class LEditsPPSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPSampler",
            display_name="LEDITS++ Sampler",
            category=CATEGORY,
            description="A SAMPLER that replays the inversion's noise maps (DPM-Solver++ 2M SDE, eta 1). Use "
                        "with SamplerCustomAdvanced, DisableNoise, the inversion's sigmas and noisy_latent.",
            inputs=[Inversion.Input("inversion", tooltip="From LEDITS++ Inversion.")],
            outputs=[io.Sampler.Output(display_name="sampler")],
        )

    @classmethod
    def execute(cls, inversion) -> io.NodeOutput:
        return io.NodeOutput(replay_sampler(inversion))
