"""Invert once, edit many: changing only the concepts re-runs the edit, not the inversion; changing
the seed re-runs the inversion. Nothing leaks between prompts. On a UNet (SDXL) and a DiT (SD3.5)."""
import pytest
from ledits_server_harness import edit_api_prompt


def executed_nodes(messages):
    cached = set()
    for event, data in messages:
        if event == "execution_cached":
            cached.update(data.get("nodes", []))
    return cached


@pytest.mark.parametrize("layout", ["sdxl", "sd35"])
def test_concept_change_reuses_the_inversion(run_prompt, tiny_ckpt, layout):
    def prompt(concept, seed):
        api = edit_api_prompt(tiny_ckpt[layout], concept=concept, seed=seed)
        if layout == "sd35":                      # a 16-channel latent
            api["3"]["class_type"] = "EmptySD3LatentImage"
        return api
    run_prompt(prompt("glasses", 501))
    _, messages = run_prompt(prompt("a red hat", 501))
    cached = executed_nodes(messages)
    assert "4" in cached and "6" not in cached  # inversion reused, edit re-run
    _, messages = run_prompt(prompt("a red hat", 502))
    assert "4" not in executed_nodes(messages)  # new seed: new inversion
