"""LEditsPPInversion: exact edit-friendly DPM-Solver++ SDE inversion of a LATENT."""
import logging

import torch
from comfy_api.latest import io

from ..ledits_core import below_pure_noise, custom_sigmas, diffusers_sigmas, draw_inversion_noise, exact_sigmas
from .families import SUPPORTED, distilled_guidance
from .host_model import (check_conditioning, check_model, first_flow_sigma, model_latent, model_name,
                         model_ref, sigma_table)
from .io_types import CATEGORY, Inversion
from .samplers import run_inversion
from .values import BaseGuidance, InversionData

NODE = "LEDITS++ Inversion"
SCHEDULES = ["exact", "diffusers"]


def kept_sigmas(model, steps, skip, schedule, sigmas=None):
    """The schedule on the model's own sigma grid (a flow model's shifted one), with skip."""
    table = sigma_table(model)
    if sigmas is not None:
        kept = custom_sigmas(sigmas, skip, final_sigma=float(table[0]) if schedule == "exact" else None)
    elif schedule == "diffusers":
        kept = diffusers_sigmas(table, steps, skip)
    else:
        kept = exact_sigmas(table, steps, skip)
    form = check_model(model, NODE).form
    return below_pure_noise(kept, form.max_sigma, first_flow_sigma(model)) if form.is_flow else kept


class LEditsPPInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPInversion",
            display_name="LEDITS++ Inversion",
            category=CATEGORY,
            description="Inverts an encoded image exactly (edit-friendly DPM-Solver++ SDE inversion): "
                        "stores one noise map per step so that a replay returns the image, and edits "
                        "replayed from it stay faithful. Invert once, edit many times.",
            inputs=[
                io.Model.Input("model", tooltip=f"A model of a family LEDITS++ edits on this ComfyUI ({SUPPORTED}). "
                                                "Use the same model for the edit."),
                io.Latent.Input("latent", tooltip="The image (or WAN clip) to edit, from VAE Encode."),
                io.Int.Input("steps", default=30, min=1, max=1000,
                             tooltip="Solver steps of inversion and edit (kept after skip). 20-50 is typical."),
                io.Float.Input("skip", default=0.15, min=0.0, max=0.95, step=0.01,
                               tooltip="Fraction of the noisiest timesteps left out. Higher keeps more of the "
                                       "original image; 0.1-0.2 is the paper's range."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Seed of the independent noise drawn at every step."),
                io.Combo.Input("schedule", options=SCHEDULES, default="exact",
                               tooltip="exact: ends at the smallest training sigma, replay returns the input "
                                       "exactly. diffusers: the diffusers pipeline's grid, ending at sigma 0 "
                                       "(not exact)."),
                io.Float.Input("source_cfg", default=3.5, min=0.0, max=30.0, step=0.1,
                               tooltip="Guidance scale of the source prompt (only used when `positive` is "
                                       "connected)."),
                io.Int.Input("batch_steps", default=1, min=1, max=64, optional=True,
                             tooltip="Model calls of this many steps run as one batch (faster, more memory; "
                                     "capped to what fits in free memory; the replay then matches to float "
                                     "round-off). 1 = one step at a time: the replay is bit-exact."),
                io.Float.Input("flux_guidance", default=-1.0, min=-1.0, max=100.0, step=0.1, optional=True,
                               tooltip="Guidance-distilled models (Flux.1 dev/Krea, Flux.2 dev): the distilled "
                                       "guidance of every prediction of the inversion and the edit. -1 = auto: "
                                       "what a FluxGuidance node put on `negative`/`positive`, else 3.5. Other "
                                       "models ignore it."),
                io.Conditioning.Input("positive", optional=True,
                                      tooltip="Optional source prompt describing the image."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Unconditional prompt, e.g. CLIP Text Encode of an empty text. "
                                              "Unconnected: zero conditioning shaped like this model's empty "
                                              "prompt (what ConditioningZeroOut gives; the help page lists it "
                                              "per family)."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="Optional schedule from any scheduler node; overrides steps. `skip` "
                                        "still drops the noisiest part."),
            ],
            outputs=[
                Inversion.Output(display_name="inversion", tooltip="Noise maps and schedule; feed the edit nodes."),
                io.Latent.Output(display_name="noisy_latent", tooltip="The noisy start latent of the replay."),
                io.Sigmas.Output(display_name="sigmas", tooltip="The schedule actually used."),
            ],
        )

    @classmethod
    def execute(cls, model, latent, steps, skip, seed, schedule, source_cfg, batch_steps=1,
                positive=None, negative=None, sigmas=None, flux_guidance=-1.0) -> io.NodeOutput:
        family = check_model(model, NODE)
        for conditioning in (negative, positive):
            check_conditioning(conditioning, NODE)
        samples = model_latent(model, latent["samples"], NODE)
        if not bool(torch.isfinite(samples).all()):
            raise ValueError(f"{NODE}: the latent contains NaN or Inf values; check VAE Encode and the image")
        try:
            kept = kept_sigmas(model, steps, skip, schedule, sigmas)
        except ValueError as error:
            raise ValueError(f"{NODE}: {error}") from error
        if negative is None and family.weak_zero_negative:
            logging.getLogger("ledits_pp").warning(
                "%s: `negative` is unconnected, so the unconditional prediction is zeros; on %s %s. Connect "
                "CLIP Text Encode with an empty text as `negative`.", NODE, family.name, family.weak_zero_negative)
        base = BaseGuidance(negative=negative if negative is not None else family.zero_conditioning(model),
                            positive=positive, cfg=float(source_cfg) if positive is not None else 1.0,
                            guidance=distilled_guidance(family, model, flux_guidance, negative, positive))
        noise = draw_inversion_noise(samples.shape, len(kept) - 1, seed)
        result, noisy = run_inversion(model, samples, kept, base, noise, seed, int(batch_steps))
        data = InversionData(
            x_T=result.x_T.detach().float().cpu(), zs=result.zs.detach().float().cpu(),
            sigmas=result.sigmas, base=base, seed=int(seed), schedule=schedule if sigmas is None else "custom",
            model_ref=model_ref(model), model_name=model_name(model))
        return io.NodeOutput(data, {"samples": noisy}, result.sigmas.clone())
