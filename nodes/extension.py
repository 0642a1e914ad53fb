"""The pack's ComfyExtension: the list of nodes ComfyUI registers."""
from comfy_api.latest import ComfyExtension

from .capture_node import LEditsPPAttentionCapture
from .concept_node import LEditsPPEditConcept
from .edit_nodes import LEditsPPGuidedEdit, LEditsPPGuider, LEditsPPSampler
from .inversion_node import LEditsPPInversion
from .mask_node import LEditsPPMaskFromAttention

NODES = [
    LEditsPPInversion,
    LEditsPPEditConcept,
    LEditsPPAttentionCapture,
    LEditsPPMaskFromAttention,
    LEditsPPGuidedEdit,
    LEditsPPGuider,
    LEditsPPSampler,
]


class LeditsExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)
