"""ComfyUI nodes and model-patch adapters for LEDITS++ (the math lives in ledits_core)."""
