"""Test-only ComfyUI custom node: registers the tiny model classes inside a server process so
CheckpointLoaderSimple can load the tiny checkpoints, and offers "LEDITS++ Test: Tiny Model", which
builds any tiny layout in memory (the tiny Flux models cannot be loaded from a file), and
"LEDITS++ Test: Trained Model", a trained tiny model of bench/quality/models/ (the shapes world, issue
#17), so that a browser test's canvas shows a real edit. Never part of the shipped pack.

The builder itself lives in tools/tiny_models.py (shared with tools/ledits_edit.py); it is loaded
here by path, once per process, and exposed as `<this package>.tiny_models` (conftest reads it
from sys.modules). Works through the server's symlinked custom_nodes folder too (resolve())."""
import importlib.util
import pathlib
import sys

_NAME = "ledits_tools_tiny_models"
_REPO = pathlib.Path(__file__).resolve().parents[3]
_PATH = _REPO / "tools" / "tiny_models.py"
_QUALITY = _REPO / "bench" / "quality"

tiny_models = sys.modules.get(_NAME)
if tiny_models is None:
    _spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    tiny_models = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = tiny_models
    _spec.loader.exec_module(tiny_models)
sys.modules[__name__ + ".tiny_models"] = tiny_models
register = tiny_models.register

register()

_BUILT = {}   # (layout, seed) -> (MODEL, CLIP, VAE): repeated prompts reuse the same objects


class TinyModelLoader:
    """MODEL, CLIP, VAE of a tiny random-weight model (tools/tiny_models.py), built from a seed."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"layout": (list(tiny_models.LAYOUTS),),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing/ledits"

    def load(self, layout, seed=0):
        key = (layout, int(seed))
        if key not in _BUILT:
            _BUILT[key] = tiny_models.build(layout, int(seed))
        return _BUILT[key]


class TrainedModelLoader:
    """MODEL, CLIP, VAE of a kept trained tiny model (bench/quality/kept_models.load): it knows the
    shapes world's words, so "red square" finds and removes the red square."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": (sorted(p.stem for p in (_QUALITY / "models").glob("*.safetensors")),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing/ledits"

    def load(self, name):
        if name not in _BUILT:
            if str(_QUALITY) not in sys.path:
                sys.path.append(str(_QUALITY))
            import kept_models                        # bench/quality: imported only when a trained model is asked for
            _BUILT[name] = kept_models.load(name)[:3]
        return _BUILT[name]


NODE_CLASS_MAPPINGS = {"LeditsTestTinyModel": TinyModelLoader, "LeditsTestTrainedModel": TrainedModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"LeditsTestTinyModel": "LEDITS++ Test: Tiny Model",
                              "LeditsTestTrainedModel": "LEDITS++ Test: Trained Model"}
