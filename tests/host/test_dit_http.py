"""Issue #10 over HTTP: a DiT edit on the real server, bad input on DiTs reported by the LEDITS++
node with the server serving the next prompt. (Interrupts on DiTs: test_reliability.py.)"""
import torch
from ledits_server_harness import concept_node, edit_node, error_text, inversion_node, ok, read_latent


def flux_prompt(seed, prefix, edit_layout="flux", concepts=("glasses", "a red hat")):
    """Tiny Flux (in-memory loader) -> empty latent -> Inversion -> concepts -> Guided Edit -> SaveLatent."""
    prompt = {
        "1": {"class_type": "LeditsTestTinyModel", "inputs": {"layout": "flux", "seed": 0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 96, "height": 64, "batch_size": 1}},
        "5": inversion_node(["1", 0], ["3", 0], 4, seed, ["2", 0]),
        "8": edit_node(["1", 0], ["5", 0]),
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": prefix}},
    }
    previous = None
    for i, text in enumerate(concepts):
        prompt[str(20 + i)] = concept_node(["1", 1], text, previous=previous)
        previous = str(20 + i)
    prompt["8"]["inputs"]["concepts"] = [previous, 0]
    if edit_layout != "flux":
        prompt["9"] = {"class_type": "LeditsTestTinyModel", "inputs": {"layout": edit_layout, "seed": 0}}
        prompt["8"]["inputs"]["model"] = ["9", 0]
    return prompt


def test_flux_edit_over_http_is_deterministic_and_bad_input_is_reported(server):
    first = server.run(flux_prompt(7, "dit_http_a"))
    assert ok(first), error_text(first)
    again = server.run(flux_prompt(7, "dit_http_b"))
    assert ok(again), error_text(again)
    a, b = read_latent(server, first), read_latent(server, again)
    assert a.shape == (1, 16, 8, 12) and bool(torch.isfinite(a).all()) and torch.equal(a, b)

    bad = server.run(flux_prompt(8, "dit_http_bad", edit_layout="flux_schnell"))
    assert not ok(bad)
    text = error_text(bad)
    assert "LEDITS++ Guided Edit" in text and "another model" in text, text
    empty = flux_prompt(9, "dit_http_empty", concepts=("  ",))
    bad = server.run(empty)
    assert not ok(bad) and "LEDITS++ Edit Concept" in error_text(bad) and "empty" in error_text(bad)
    after = server.run(flux_prompt(10, "dit_http_after"))
    assert ok(after), error_text(after)
