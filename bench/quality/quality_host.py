"""ComfyUI in this process for the quality bench, set up as main.py does for a CPU run (the host
tests' conftest does the same; importing this after it is harmless)."""
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMFY = pathlib.Path(os.environ.get("COMFYUI_PATH", os.path.expanduser("~/ComfyUI")).split(":")[0])
# inside the host tests ComfyUI is already imported (maybe another version than COMFY): keep it
for path in (str(HERE),) + (() if "comfy" in sys.modules else (str(COMFY),)):
    if path not in sys.path:
        sys.path.insert(0, path)

import comfy.cli_args  # noqa: E402

comfy.cli_args.args.cpu = True
comfy.cli_args.args.use_pytorch_cross_attention = True
comfy.cli_args.args.disable_api_nodes = True
import comfy.model_management  # noqa: E402,F401
