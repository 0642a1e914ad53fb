"""Invert once, edit many: changing only the concepts re-runs the edit, not the inversion; changing
the seed re-runs the inversion. Nothing leaks between prompts."""
from ledits_server_harness import edit_api_prompt


def executed_nodes(messages):
    cached = set()
    for event, data in messages:
        if event == "execution_cached":
            cached.update(data.get("nodes", []))
    return cached


def test_concept_change_reuses_the_inversion(run_prompt, tiny_ckpt):
    first, _ = run_prompt(edit_api_prompt(tiny_ckpt["sdxl"], concept="glasses", seed=501))
    _, messages = run_prompt(edit_api_prompt(tiny_ckpt["sdxl"], concept="a red hat", seed=501))
    cached = executed_nodes(messages)
    assert "4" in cached and "6" not in cached  # inversion reused, edit re-run
    _, messages = run_prompt(edit_api_prompt(tiny_ckpt["sdxl"], concept="a red hat", seed=502))
    assert "4" not in executed_nodes(messages)  # new seed: new inversion
