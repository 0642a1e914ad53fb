"""Test-only ComfyUI custom node: registers the tiny model classes inside a server process so
CheckpointLoaderSimple can load the tiny checkpoints. Never part of the shipped pack."""
from .tiny_models import register

register()

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
