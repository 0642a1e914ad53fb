"""LEditsPPAttentionCapture: a MODEL clone whose cross-attention can record concept maps."""
from comfy_api.latest import io

from .capture import CaptureConfig, patch_model
from .host_model import check_model
from .io_types import CATEGORY

RESOLUTIONS = {"latent/4": 4, "latent/2": 2, "latent/8": 8}


class LEditsPPAttentionCapture(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPAttentionCapture",
            display_name="LEDITS++ Attention Capture",
            category=CATEGORY,
            description="Patches a clone of the MODEL so LEDITS++ can record the edit concepts' cross-attention "
                        "(only those rows, at one UNet level; every other attention keeps the fast kernel). "
                        "Attention patches of other nodes are kept and still run. Optional: the edit "
                        "nodes capture at latent/4 by themselves.",
            inputs=[
                io.Model.Input("model", tooltip="SD1.x, SD2.x or SDXL model to record the concepts' attention of."),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="latent/4",
                               tooltip="UNet level whose cross-attention is recorded; latent/4 is the papers'."),
                io.Boolean.Input("include_middle", default=False,
                                 tooltip="Also record the middle block when it sits at that level (SDXL)."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, resolution, include_middle) -> io.NodeOutput:
        check_model(model, "LEDITS++ Attention Capture")
        config = CaptureConfig(divisor=RESOLUTIONS[resolution], include_middle=bool(include_middle))
        return io.NodeOutput(patch_model(model, config))
