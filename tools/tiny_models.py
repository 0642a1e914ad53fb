"""Tiny random-weight SD1.5-, SD2-v- and SDXL-layout checkpoints (for tests and the install check),
plus the flow-matching DiTs of tools/tiny_dit_models.py (layouts sd3, sd35, flux, flux_schnell).

Shipped in tools/ but never imported by the pack at run time: tools/ledits_edit.py uses it when no
--ckpt is given, and the test-only custom node tests/host/fixture_node loads it by path. It needs
ComfyUI importable (comfy.*), so import it only after ComfyUI is on sys.path.

ComfyUI's detection only matches real channel counts, so test-only model classes with the tiny
configs are put at the front of `comfy.supported_models.models` (in every process that loads the
files). The real CLIP tokenizers are kept, so token positions are real; the text encoders, UNets
and TAESD VAEs are small and filled from a seeded generator.
"""
import importlib.util
import pathlib
import sys


import comfy.model_base
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models as supported
import comfy.supported_models_base

CLIP_L_64 = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
             "projection_dim": 64}
CLIP_L_32 = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3,
             "projection_dim": 32}
CLIP_G_64 = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
             "projection_dim": 64}

_UNET_COMMON = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
                "legacy": False, "in_channels": 4, "model_channels": 32, "use_temporal_attention": False,
                "use_temporal_resblock": False}
UNETS = {
    "sd15": {**_UNET_COMMON, "adm_in_channels": None, "num_res_blocks": [2, 2, 2, 2],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
             "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 64,
             "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    "sd2v": {**_UNET_COMMON, "adm_in_channels": None, "num_res_blocks": [2, 2, 2, 2],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
             "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 64,
             "num_heads": -1, "num_head_channels": 8,
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    "sdxl": {**_UNET_COMMON, "num_classes": "sequential", "adm_in_channels": 1600, "num_res_blocks": [2, 2, 2],
             "transformer_depth": [0, 0, 1, 1, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth_middle": 2,
             "use_linear_in_transformer": True, "context_dim": 96, "num_heads": -1, "num_head_channels": 16,
             "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2]},
}
_MATCH_KEYS = ("context_dim", "model_channels", "use_linear_in_transformer", "adm_in_channels",
               "use_temporal_attention")


def _match(layout):
    config = {k: UNETS[layout][k] for k in _MATCH_KEYS}
    if layout == "sdxl":
        config["transformer_depth"] = UNETS["sdxl"]["transformer_depth"]
    return config


class TinySD1Clip(comfy.sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(device=device, dtype=dtype, model_options={**model_options, "clip_l_model_config": CLIP_L_64},
                         **kwargs)


class TinySDXLClip(comfy.sdxl_clip.SDXLClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, model_options={
            **model_options, "clip_l_model_config": CLIP_L_32, "clip_g_model_config": CLIP_G_64})


class TinySD15(supported.SD15):
    unet_config = _match("sd15")

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, TinySD1Clip)


class TinySD2V(supported.SD20):
    """SD2.x UNet layout (linear projections, head-width attention), v-prediction."""
    unet_config = _match("sd2v")
    unet_extra_config = {"num_heads": -1, "num_head_channels": 8}
    process_clip_state_dict = supported.SD15.process_clip_state_dict
    process_clip_state_dict_for_saving = supported.SD15.process_clip_state_dict_for_saving

    def model_type(self, state_dict, prefix=""):
        return comfy.model_base.ModelType.V_PREDICTION

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, TinySD1Clip)


class TinySDXL(supported.SDXL):
    unet_config = _match("sdxl")
    unet_extra_config = {"num_heads": -1, "num_head_channels": 16}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClip)


def _sibling(name):
    """tools/<name>.py by path, under the name tools/ledits_edit.py would give it (tools/ is no package)."""
    module_name = "ledits_tools_" + name.replace("/", "_")
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, pathlib.Path(__file__).resolve().parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return module


def _family_builders():
    """tools/tiny_families/<family>.py, each loaded by path: its BUILDERS {layout: build(seed) ->
    (MODEL, CLIP, VAE)} for the families that this host has (a module whose host lacks the model
    class sets BUILDERS = {} and says why in SKIPPED {layout: reason})."""
    builders, skipped = {}, {}
    for path in sorted((pathlib.Path(__file__).resolve().parent / "tiny_families").glob("[!_]*.py")):
        module = _sibling(f"tiny_families/{path.stem}")
        builders.update(module.BUILDERS)
        skipped.update(getattr(module, "SKIPPED", {}))
    return builders, skipped


dit = _sibling("tiny_dit_models")
UNET_CLASSES = {"sd15": TinySD15, "sd2v": TinySD2V, "sdxl": TinySDXL}
CLASSES = {**UNET_CLASSES, **dit.CLASSES}
UNETS.update(dit.UNETS)                  # layout -> diffusion-model config, for every layout
FAMILY_BUILDERS, SKIPPED_LAYOUTS = _family_builders()   # in-memory layouts of the newer families
LAYOUTS = tuple(CLASSES) + tuple(FAMILY_BUILDERS)
FILE_LAYOUTS = tuple(UNET_CLASSES) + tuple(dit.FILE_LAYOUTS)   # what CheckpointLoaderSimple can load


def register():
    """Put the tiny classes that load from files first in ComfyUI's detection list (idempotent).
    The tiny Flux classes stay out: they are built in memory only."""
    names = {type_.__name__ for type_ in supported.models}
    for layout in reversed(FILE_LAYOUTS):
        if CLASSES[layout].__name__ not in names:
            supported.models.insert(0, CLASSES[layout])


def build(layout, seed=0):
    """(ModelPatcher, CLIP, VAE) of a tiny model, weights from `seed`."""
    register()
    if layout in FAMILY_BUILDERS:
        return FAMILY_BUILDERS[layout](seed)
    if layout in dit.CLASSES:
        return dit.build(layout, seed)
    return dit.assemble(CLASSES[layout], UNETS[layout], seed, latent_channels=4)


def unsupported_model(kind):
    """A tiny MODEL LEDITS++ refuses: "sd15_inpaint" (image + mask channels in), or one of
    tiny_dit_models.unsupported_model's DiTs."""
    if kind == "sd15_inpaint":
        return dit.bare_model(TinySD15, dict(UNETS["sd15"], in_channels=9))
    return dit.unsupported_model(kind)


def write_checkpoint(layout, path, seed=0):
    if layout in dit.CLASSES:
        return dit.write_checkpoint(layout, path, seed)
    patcher, clip, vae = build(layout, seed)
    comfy.sd.save_checkpoint(str(path), patcher, clip, vae)
    return path
