"""Custom socket types of the pack (links only connect between matching type names)."""
from comfy_api.latest import io

Inversion = io.Custom("LEDITS_INVERSION")
Concepts = io.Custom("LEDITS_CONCEPTS")
Attention = io.Custom("LEDITS_ATTENTION")

CATEGORY = "LEDITS++"
