"""Issue #10 over HTTP and in-process: DiT edits on the real server, bad input on DiTs reported by
the LEDITS++ node with the server serving the next prompt, and an interrupted Flux edit that leaves
no patch behind."""
import pytest
import torch
from ledits_server_harness import concept_node, edit_node, error_text, inversion_node, ok, read_latent


def flux_prompt(seed, prefix, edit_layout="flux", concepts=("glasses", "a red hat")):
    """Tiny Flux (in-memory loader) -> empty latent -> Inversion -> concepts -> Guided Edit -> SaveLatent."""
    prompt = {
        "1": {"class_type": "LEditsPPTestTinyModel", "inputs": {"layout": "flux", "seed": 0}},
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
        prompt["9"] = {"class_type": "LEditsPPTestTinyModel", "inputs": {"layout": edit_layout, "seed": 0}}
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


def test_interrupted_flux_edit_leaves_no_patch(comfy_host, run_node):
    import comfy.model_management as mm
    model, clip, _ = comfy_host["tiny"].build("flux", seed=0)
    latent = {"samples": torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))}
    negative = run_node("CLIPTextEncode", clip=clip, text="")[0]
    inversion = run_node("LEditsPPInversion", model=model, latent=latent, steps=5, skip=0.15, seed=5,
                         schedule="exact", source_cfg=3.5, negative=negative)[0]
    concepts = run_node("LEditsPPEditConcept", clip=clip, text="glasses", scale=5.0, threshold=0.9,
                        reverse=False, warmup=0, cooldown=10000, mask_type="intersect")[0]
    calls = []

    def interrupt_at_third_call(apply_model, args):
        calls.append(1)
        if len(calls) == 3:
            mm.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])
    tripwire = model.clone()
    tripwire.set_model_unet_function_wrapper(interrupt_at_third_call)
    state = lambda m: repr(m.model_options)
    before, before_trip = state(model), state(tripwire)

    def edit(m):
        return run_node("LEditsPPGuidedEdit", model=m, inversion=inversion, concepts=concepts, cfg=7.5,
                        guidance_rescale=0.0)[0]["samples"]
    reference = edit(model)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            edit(tripwire)
    finally:
        mm.interrupt_current_processing(False)
    assert len(calls) == 3
    assert state(model) == before and state(tripwire) == before_trip
    assert "optimized_attention_override" not in model.model_options.get("transformer_options", {})
    assert torch.equal(edit(model), reference)
