"""LEDITS++ for ComfyUI.

ComfyUI loads this folder as a package and calls `comfy_entrypoint()`. Nothing that needs
ComfyUI (or does work) is imported at module level, so the package also imports cleanly in plain
Python (pytest imports it) and costs nothing at start-up beyond registering the nodes.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import LeditsExtension

    return LeditsExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
