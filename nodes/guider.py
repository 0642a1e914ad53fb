"""LeditsGuider: a CFGGuider whose prediction is the LEDITS++ edit (ledits_core.guidance).

One `calc_cond_batch` per step evaluates [positive, negative, concept_0, ...] together (inactive
concepts are skipped), cross-attention of the concept rows is captured in the same UNet call,
and the masks and guidance are computed from this step's predictions. Pre/post-CFG hooks of
other nodes are run as CFGGuider would run them. Per-run state is reset in `sample`.
"""
from dataclasses import replace

import torch

import comfy.model_management
import comfy.samplers

from ..ledits_core import apply_edit_guidance, is_active, rescale_guidance
from ..ledits_core.guidance import cfg as cfg_combine
from ..ledits_core.masks import edited_region, resize_user_mask, with_frames
from .capture import model_config, with_request
from .families import with_guidance
from .host_model import check_model

STEP_KEY = "ledits_pp_step"
NEGATIVE, POSITIVE, FIRST_CONCEPT = 1, 0, 2


class LeditsGuider(comfy.samplers.CFGGuider):
    def __init__(self, model_patcher, base, concepts=(), guidance_rescale=0.0, record=False):
        super().__init__(model_patcher)
        self.family = check_model(model_patcher, "LEDITS++")
        self.base = base
        self.concepts = tuple(concepts)
        self.guidance_rescale = float(guidance_rescale)
        self.record = record
        conds = {"negative": base.negative}
        if base.positive is not None:
            conds["positive"] = base.positive
        for c, concept in enumerate(self.concepts):
            conds[f"edit_{c}"] = concept.conditioning
        # guidance-distilled models (Flux dev): every prediction at the same distilled guidance
        self.inner_set_conds({name: with_guidance(cond, base.guidance) for name, cond in conds.items()})
        self.cfg = base.cfg
        self._reset_run()

    def _reset_run(self):
        self.steps = []          # per step: list of (attention map or None, mask or None) per concept
        self._mask_sums = [None] * len(self.concepts)      # per concept: its masks summed over active steps
        self._active_steps = [0] * len(self.concepts)
        self._user_masks = {}

    def sample(self, *args, **kwargs):
        self._reset_run()
        return super().sample(*args, **kwargs)

    def _step_index(self, timestep, model_options):
        transformer = model_options.get("transformer_options", {})
        if STEP_KEY in transformer:
            return transformer[STEP_KEY]
        schedule = transformer.get("sample_sigmas")
        if schedule is None:
            return 0
        # another sampler drives this guider: the nearest schedule point at or above sigma
        above = (schedule >= timestep[0] * (1 - 1e-5)).nonzero()
        return int(above[-1]) if len(above) else 0

    def _user_mask(self, c, x):
        key = (c, tuple(x.shape))
        if key not in self._user_masks:
            mask = self.concepts[c].user_mask
            self._user_masks[key] = None if mask is None else with_frames(resize_user_mask(
                mask, x.shape[-2:], x.shape[0]), x).to(x.device)
        return self._user_masks[key]

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        step = self._step_index(timestep, model_options)
        active = [is_active(c.params, step) for c in self.concepts]
        conds = [self.conds.get("positive"), self.conds.get("negative")]
        conds += [self.conds.get(f"edit_{c}") if on else None for c, on in enumerate(active)]

        wanted = {FIRST_CONCEPT + c: (concept.token_positions, concept.context_length)
                  for c, concept in enumerate(self.concepts)
                  if active[c] and concept.params.needs_attention}
        request = None
        if wanted:
            config = model_config(model_options)
            network = self.inner_model.diffusion_model
            request = self.family.capture_request(wanted, x.shape[-2:], config, network)
            model_options = with_request(self.family.install_capture(model_options, network, config), request)

        out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        for fn in model_options.get("sampler_pre_cfg_function", []):
            out = fn({"conds": conds, "conds_out": out, "cond_scale": self.cfg, "timestep": timestep,
                      "input": x, "sigma": timestep, "model": self.inner_model,
                      "model_options": model_options})

        uncond = out[NEGATIVE]
        has_positive = conds[POSITIVE] is not None
        base = cfg_combine(uncond, out[POSITIVE], self.cfg) if has_positive else uncond
        preds = [out[FIRST_CONCEPT + c] if on else None for c, on in enumerate(active)]
        maps = [request.maps.map(FIRST_CONCEPT + c) if request is not None else None
                for c in range(len(self.concepts))]
        for c, concept in enumerate(self.concepts):
            if active[c] and concept.params.needs_attention and maps[c] is None:
                raise RuntimeError(
                    "LEDITS++: no attention was recorded for concept "
                    f"'{concept.text}'. Another node replaced the attention or the blocks of this model "
                    "in a way LEDITS++ cannot see through (e.g. torch.compile, a block cache such as "
                    "TeaCache, or an attention patch that skips the host's attention); remove it or use "
                    "mask_type 'noise'.")
        params = [concept.params for concept in self.concepts]
        if any(concept.user_mask is not None for concept in self.concepts):
            params = [p if self.concepts[c].user_mask is None else
                      _with_user_mask(p, self._user_mask(c, x)) for c, p in enumerate(params)]
        guided, masks = apply_edit_guidance(base, uncond, preds, params, step, maps)

        if self.guidance_rescale > 0 and any(p is not None for p in preds):
            sigma = timestep.reshape(-1, *([1] * (x.ndim - 1)))
            active_preds = torch.stack([p for p in preds if p is not None]).mean(0)
            form = self.family.form
            eps = rescale_guidance(form.eps_from_denoised(x, guided, sigma),
                                   form.eps_from_denoised(x, active_preds, sigma), self.guidance_rescale)
            guided = form.denoised_from_eps(x, eps, sigma)

        for fn in model_options.get("sampler_post_cfg_function", []):
            guided = fn({"denoised": guided, "cond": conds[POSITIVE], "uncond": conds[NEGATIVE],
                         "cond_scale": self.cfg, "model": self.inner_model, "uncond_denoised": uncond,
                         "cond_denoised": out[POSITIVE] if has_positive else uncond,
                         "sigma": timestep, "model_options": model_options, "input": x})
        self._remember(step, maps, masks)
        return guided

    @property
    def edited_masks(self):
        """Per concept: the cells it edited in at least 10 % of its active steps (None: never active)."""
        return [edited_region(total, n) for total, n in zip(self._mask_sums, self._active_steps)]

    def _remember(self, step, maps, masks):
        for c, mask in enumerate(masks):
            if mask is not None:
                m = mask.detach().float()
                self._mask_sums[c] = m if self._mask_sums[c] is None else self._mask_sums[c] + m
                self._active_steps[c] += 1
        if self.record:
            small = [(None if a is None else a.detach(),
                      None if m is None else _pool(m)) for a, m in zip(maps, masks)]
            while len(self.steps) <= step:
                self.steps.append(None)
            self.steps[step] = small


def _with_user_mask(params, mask):
    return replace(params, user_mask=mask)


def _pool(mask):
    """Masks are kept per step at 1/4 of the latent size: (B, h, w), of latents with frames one per
    frame (B, T, h, w) -- enough for the previews and the scrubber's frame slider."""
    m = mask[:, 0].float()
    if min(m.shape[-2:]) >= 4:
        m = torch.nn.functional.avg_pool2d(m.reshape(-1, 1, *m.shape[-2:]), 4, ceil_mode=True)
        m = m.reshape(*mask.shape[:1], *mask.shape[2:-2], *m.shape[-2:])
    return m.detach()


def check_interrupt():
    comfy.model_management.throw_exception_if_processing_interrupted()
