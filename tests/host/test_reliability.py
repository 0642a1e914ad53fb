"""Issue #6 reliability suite (host tier, bounded): interrupts, a long session, a fuzz pass.

* Interrupt (POST /interrupt on the real server) during the inversion and during the edit: the
  next prompt runs and gives bit for bit the result of a clean run; in-process, an interrupted
  edit leaves no LEDITS++ patch on the model.
* 20 consecutive prompts with varying concepts, sizes, batch and models on one server: the
  server's RSS stays flat (growth printed and bounded), results are deterministic per seed, the
  inversion is reused (execution_cached) when only concepts change and recomputed when the image,
  model, steps or seed change.
* A fuzz pass over every node's inputs at their bounds and with wrong-but-connectable values: each
  prompt either succeeds or fails with a clear error naming the LEDITS++ node (or a validation
  error), and the server keeps serving.

Tiny random-weight models, latents <= 32x32, few steps: the whole file runs in a few minutes on
2 CPU cores.
"""
import json
import pathlib
import time

import pytest
import torch
from ledits_fuzz_cases import FUZZ
from ledits_server_harness import (cached_nodes, error_text, messages, ok, prompt_for, read_latent, with_prefix,
                                   write_image)

PACK_NAMES = ("LEDITS++",)


# -- helpers ------------------------------------------------------------------------------------
def server_rss_mb(server):
    """Resident memory of the server process (from /proc), in MiB."""
    for line in pathlib.Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def queue_and_interrupt_at(server, prompt, node, step=2, timeout=300):
    """Queue `prompt`, follow the server's websocket and POST /interrupt as soon as `node` reports
    progress `step` (so the interrupt lands inside that node, however loaded the machine is).
    Returns the prompt id."""
    import asyncio
    import aiohttp

    async def follow():
        async with aiohttp.ClientSession() as session:
            ws_url = server.url.replace("http://", "ws://") + f"/ws?clientId={server.client_id}"
            async with session.ws_connect(ws_url, heartbeat=30) as ws:
                prompt_id = await asyncio.to_thread(server.queue, prompt)
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    event = json.loads(msg.data)
                    data = event.get("data") or {}
                    if data.get("prompt_id") != prompt_id:
                        continue
                    if event.get("type") == "progress" and str(data.get("node")) == node and data["value"] >= step:
                        await asyncio.to_thread(server.interrupt)
                        return prompt_id
                    if event.get("type") in ("execution_success", "execution_error") or \
                            (event.get("type") == "executing" and data.get("node") is None):
                        raise AssertionError(f"prompt ended before node {node} reached step {step}")
        raise AssertionError("websocket closed")
    return asyncio.run(asyncio.wait_for(follow(), timeout))


# -- 1. interrupts ------------------------------------------------------------------------------
@pytest.mark.parametrize("stage, layout", [("inversion", "sd15"), ("edit", "sd15"), ("edit", "sd35")])
def test_interrupt_then_same_result_as_clean_run(server, tiny_ckpt, stage, layout):
    """POST /interrupt inside the node; the re-queued prompt finishes and equals a clean (uncached) run."""
    image = write_image(server, f"rel_int_{stage}_{layout}.png", 128, 128, seed=3)   # 16x16 latent
    steps, seed = 12, 101 if stage == "inversion" else 202
    target = "5" if stage == "inversion" else "8"
    concepts = (("glasses", False), ("a red hat", True))
    ckpt = tiny_ckpt[layout]
    prompt = prompt_for(ckpt, image, steps=steps, seed=seed, prefix=f"rel_int_{stage}_{layout}", concepts=concepts)
    if stage == "edit":   # the inversion gets cached first, so the interrupted prompt only edits
        assert ok(server.run(prompt_for(ckpt, image, steps=steps, seed=seed, prefix=f"rel_int_warm_{layout}")))
    prompt_id = queue_and_interrupt_at(server, prompt, target, step=3)
    entry = server.wait(prompt_id)
    interrupted = messages(entry, "execution_interrupted")
    assert not ok(entry) and interrupted, entry["status"]
    assert interrupted[0]["node_id"] == target, f"interrupted in {interrupted[0]} instead of node {target}"
    after = server.run(with_prefix(prompt, f"rel_after_{stage}_{layout}"))
    assert ok(after), error_text(after)
    # a different prompt in between evicts the cache, then a clean run of the same prompt
    assert ok(server.run(prompt_for(ckpt, image, steps=2, seed=seed + 1)))
    clean = server.run(with_prefix(prompt, f"rel_clean_{stage}_{layout}"))
    assert ok(clean), error_text(clean)
    assert not {"5", "8"} & cached_nodes(clean), "the clean run was served from the cache"
    assert torch.equal(read_latent(server, after), read_latent(server, clean))


@pytest.mark.parametrize("layout", ["sd15", "flux"])
def test_interrupted_edit_leaves_no_patch_in_process(load_tiny, comfy_host, run_node, layout):
    """In-process: the interrupt flag is raised at the 3rd model call of the edit (deterministic, as
    POST /interrupt does); the MODEL carries no LEDITS++ patch or attention override afterwards and
    the next edit equals the clean run before it. On a UNet and on a DiT (tiny Flux, in memory)."""
    import comfy.model_management as mm
    model, clip, _ = load_tiny(layout) if layout == "sd15" else comfy_host["tiny"].build(layout, seed=0)
    channels = 4 if layout == "sd15" else 16
    latent = {"samples": torch.randn(1, channels, 16, 16, generator=torch.Generator().manual_seed(0))}
    negative = run_node("CLIPTextEncode", clip=clip, text="")[0]
    inversion = run_node("LEditsPPInversion", model=model, latent=latent, steps=6, skip=0.15, seed=5,
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
    state = lambda m: (repr(m.model_options), len(getattr(m, "wrappers", {}) or {}),
                       len(getattr(m, "callbacks", {}) or {}), len(m.patches), len(m.object_patches))
    before, before_trip = state(model), state(tripwire)

    def edit(m):
        return run_node("LEditsPPGuidedEdit", model=m, inversion=inversion, concepts=concepts, cfg=7.5,
                        guidance_rescale=0.0)[0]["samples"]
    reference = edit(model)                          # a clean run first
    try:
        with pytest.raises(mm.InterruptProcessingException):
            edit(tripwire)
    finally:
        mm.interrupt_current_processing(False)
    assert len(calls) == 3, calls

    def ledits_patches(m):
        options = m.model_options.get("transformer_options", {})
        sites = options.get("patches_replace", {})
        return [(kind, site) for kind, entries in sites.items() for site, patch in entries.items()
                if getattr(patch, "is_ledits_capture", False)] + (
            ["override"] if getattr(options.get("optimized_attention_override"), "is_ledits_capture", False) else [])
    assert not ledits_patches(model) and not ledits_patches(tripwire)
    assert state(model) == before and state(tripwire) == before_trip
    assert torch.equal(edit(model), reference)


# -- 2. a long session --------------------------------------------------------------------------
def test_twenty_prompts_memory_flat_deterministic_and_cached(server, tiny_ckpt):
    sizes = [(64, 64), (128, 96), (192, 192), (192, 128)]
    images = {s: write_image(server, f"rel_long_{s[0]}x{s[1]}.png", *s, seed=s[0] + s[1]) for s in sizes}
    alt_image = write_image(server, "rel_long_alt.png", 128, 96, seed=99)
    concept_sets = [(("glasses", False),), (("a red hat", False), ("cat", True)),
                    (("sunset", False), ("dog", True), ("snow", False)), ()]
    xl, sd = tiny_ckpt["sdxl"], tiny_ckpt["sd15"]
    # (label, prompt kwargs, expectation for the inversion node "5": "reuse" / "recompute" / None)
    plan = []
    for i in range(12):                              # warm-up and churn: every size, batch, concept set
        size = sizes[i % len(sizes)]
        plan.append((f"churn{i}", dict(ckpt=xl, image=images[size], concepts=concept_sets[i % 4],
                                       steps=3 + i % 3, seed=i, batch=1 + i % 2), None))
    base = dict(ckpt=xl, image=images[(128, 96)], concepts=concept_sets[0], steps=4, seed=7, batch=1)
    plan += [
        ("base", base, "recompute"),
        ("concepts", dict(base, concepts=concept_sets[2]), "reuse"),
        ("image", dict(base, image=alt_image, concepts=concept_sets[2]), "recompute"),
        ("model", dict(base, ckpt=sd, image=alt_image, concepts=concept_sets[2]), "recompute"),
        ("steps", dict(base, ckpt=sd, image=alt_image, concepts=concept_sets[2], steps=5), "recompute"),
        ("seed", dict(base, ckpt=sd, image=alt_image, concepts=concept_sets[2], steps=5, seed=8), "recompute"),
        ("concepts2", dict(base, ckpt=sd, image=alt_image, concepts=concept_sets[1], steps=5, seed=8), "reuse"),
        ("base_again", base, "recompute"),           # same as "base" after other prompts: recomputed
    ]
    assert len(plan) == 20
    rss, results, times = [], {}, []
    for label, kwargs, expect in plan:
        kwargs = dict(kwargs)
        ckpt, image = kwargs.pop("ckpt"), kwargs.pop("image")
        started = time.monotonic()
        entry = server.run(prompt_for(ckpt, image, prefix=f"rel_long_{label}", **kwargs))
        times.append(time.monotonic() - started)
        assert ok(entry), f"{label}: {error_text(entry)}"
        rss.append(server_rss_mb(server))
        cached = cached_nodes(entry)
        if expect == "reuse":
            assert "5" in cached, f"{label}: the inversion was recomputed (cached: {sorted(cached)})"
            assert "8" not in cached
        elif expect == "recompute":
            assert "5" not in cached, f"{label}: the inversion was reused (cached: {sorted(cached)})"
        results[label] = read_latent(server, entry)
    assert torch.equal(results["base"], results["base_again"]), "not deterministic per seed"
    assert not torch.equal(results["base"], results["concepts"])
    warm = rss[len(sizes) * 2 - 1]                   # after every size and batch ran once
    growth = rss[-1] - warm
    print(f"\n20 prompts in {sum(times):.1f} s; server RSS MiB: start {rss[0]:.0f}, after warm-up {warm:.0f}, "
          f"end {rss[-1]:.0f}, max {max(rss):.0f}; growth after warm-up {growth:+.1f} MiB")
    print("RSS per prompt:", " ".join(f"{r:.0f}" for r in rss))
    assert growth < 100, f"server RSS grew by {growth:.0f} MiB over 12 prompts after warm-up: {rss}"


# -- 3. fuzz ------------------------------------------------------------------------------------
def test_fuzz_every_node_input(server, tiny_ckpt):
    image = write_image(server, "rel_fuzz.png", 64, 64, seed=5)      # 8x8 latent: cheap
    outcome = {}
    started = time.monotonic()
    for name, build in FUZZ.items():
        ckpt = tiny_ckpt["sdxl" if name == "inversion_from_sdxl_to_sd15" else "sd15"]
        prompt = with_prefix(build(ckpt, image), "rel_fuzz_" + name.replace("/", "_"))
        status, body = server.request("/prompt", {"prompt": prompt, "client_id": server.client_id})
        if status != 200 or body.get("node_errors"):
            text = json.dumps(body)
            assert "node_errors" in body or "error" in body, f"{name}: unclear rejection {text[:500]}"
            outcome[name] = "rejected: " + (body.get("error", {}).get("message", "") + " " +
                                            " ".join(e.get("message", "") for n in body.get("node_errors", {}).values()
                                                     for e in n.get("errors", [])))[:120]
            continue
        entry = server.wait(body["prompt_id"], timeout=300)
        server.assert_alive()
        if ok(entry):
            outcome[name] = "ok"
            continue
        errors = messages(entry, "execution_error")
        assert errors, f"{name}: failed without an execution_error: {entry['status']}"
        text = errors[0].get("exception_message", "")
        assert errors[0].get("exception_type", "").split(".")[-1] in ("ValueError", "RuntimeError"), \
            f"{name}: crashed instead of a clear error: {error_text(entry)}"
        assert any(n in text for n in PACK_NAMES), f"{name}: error does not name the node: {text}"
        outcome[name] = "error: " + text[:120]
    print(f"\nfuzz: {len(FUZZ)} prompts in {time.monotonic() - started:.1f} s")
    for name, result in outcome.items():
        print(f"  {name:34s} {result}")
    # the host keeps serving
    final = server.run(prompt_for(tiny_ckpt["sd15"], image, seed=4242, prefix="rel_fuzz_final"))
    assert ok(final), error_text(final)
    # cases that must succeed (valid, if unusual, inputs)
    must_pass = ["steps_1", "skip_0", "skip_0.95", "seed_max", "concepts_0", "concepts_64", "threshold_0",
                 "threshold_1", "scale_0", "cooldown_0", "user_mask_other_size", "cfg_0_with_target",
                 "custom_sampler", "mask_all_concepts", "batch_steps_64"]
    failed = {n: outcome[n] for n in must_pass if outcome[n] != "ok"}
    assert not failed, failed
    must_refuse = ["inversion_from_other_model", "inversion_from_sdxl_to_sd15", "custom_sampler_latent_other_size",
                   "custom_sampler_other_sigmas", "user_mask_other_batch", "mask_concept_63", "mask_step_1000",
                   "steps_0", "skip_1", "threshold_2", "mask_type_bogus", "concepts_from_latent"]
    accepted = [n for n in must_refuse if outcome[n] == "ok"]
    assert not accepted, f"accepted wrong input: {accepted}"
