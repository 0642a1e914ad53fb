"""LEditsPPAttentionCapture: a MODEL clone whose attention can record concept maps."""
from comfy_api.latest import io

from .capture import CaptureConfig
from .families import SUPPORTED
from .host_model import check_model
from .io_types import CATEGORY

RESOLUTIONS = {"latent/4": 4, "latent/2": 2, "latent/8": 8}
NODE = "LEDITS++ Attention Capture"


class LEditsPPAttentionCapture(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEditsPPAttentionCapture",
            display_name=NODE,
            category=CATEGORY,
            description="Patches a clone of the MODEL so LEDITS++ can record the edit concepts' attention "
                        "(only those rows, at one UNet level or at chosen DiT blocks; every other attention "
                        "keeps the fast kernel). Attention patches of other nodes are kept and still run. "
                        "Optional: the edit nodes capture with the defaults by themselves.",
            inputs=[
                io.Model.Input("model", tooltip="The model to record the concepts' attention of: a family "
                                                f"LEDITS++ edits on this ComfyUI ({SUPPORTED})."),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="latent/4",
                               tooltip="UNets: the level whose cross-attention is recorded; latent/4 is the "
                                       "papers'. DiTs record on their token grid (latent/2; Flux.2: latent/1; WAN: "
                                       "per frame) and ignore this."),
                io.Boolean.Input("include_middle", default=False,
                                 tooltip="UNets: also record the middle block when it sits at that level (SDXL)."),
                io.String.Input("blocks", default="auto", optional=True,
                                tooltip="DiTs: the blocks to average, in run order (Flux.1, Flux.2, Chroma, "
                                        "HiDream: double-stream blocks first, then single-stream; Z-Image / "
                                        "Lumina 2: the main layers only). 'auto' = the family's default (see "
                                        "the help page), 'all', or indices and ranges such as '0-9, 12'. "
                                        "UNets ignore this."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, resolution, include_middle, blocks="auto") -> io.NodeOutput:
        family = check_model(model, NODE)
        config = CaptureConfig(divisor=RESOLUTIONS[resolution], include_middle=bool(include_middle),
                               blocks=str(blocks or "auto"))
        try:
            return io.NodeOutput(family.patch_model(model, config))
        except ValueError as error:
            raise ValueError(f"{NODE}: {error}") from error
