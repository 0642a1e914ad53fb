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
import uuid

import pytest
import torch

PACK_NAMES = ("LEDITS++",)


# -- helpers ------------------------------------------------------------------------------------
def server_rss_mb(server):
    """Resident memory of the server process (from /proc), in MiB."""
    for line in pathlib.Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def write_image(server, name, width, height, seed):
    from PIL import Image
    gen = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=gen) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(server.base / "input" / name)
    return name


def prompt_for(ckpt, image, concepts=(("glasses", False),), steps=4, seed=0, batch=1, prefix=None,
               mask_type="intersect", threshold=0.9, skip=0.15, batch_steps=None):
    """Loader -> LoadImage -> VAEEncode (-> RepeatLatentBatch) -> Inversion -> concepts -> Guided Edit
    -> SaveLatent. Node ids: 1 loader, 2 empty text, 3 image, 4 encode, 5 inversion, 6 batch,
    8 edit, 11 save edit, 12 save source; concepts 20.."""
    prefix = prefix or "rel_" + uuid.uuid4().hex[:8]
    latent = ["4", 0]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": image}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "LEditsPPInversion", "inputs": {
            "model": ["1", 0], "latent": latent, "steps": steps, "skip": skip, "seed": seed,
            "schedule": "exact", "source_cfg": 3.5, "negative": ["2", 0]}},
        "8": {"class_type": "LEditsPPGuidedEdit", "inputs": {
            "model": ["1", 0], "inversion": ["5", 0], "cfg": 7.5, "guidance_rescale": 0.0}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": prefix + "_edit"}},
        "12": {"class_type": "SaveLatent", "inputs": {"samples": latent, "filename_prefix": prefix + "_src"}},
    }
    if batch > 1:
        prompt["6"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["4", 0], "amount": batch}}
        prompt["5"]["inputs"]["latent"] = prompt["12"]["inputs"]["samples"] = ["6", 0]
    if batch_steps is not None:
        prompt["5"]["inputs"]["batch_steps"] = batch_steps
    previous = None
    for i, (text, reverse) in enumerate(concepts):
        node = str(20 + i)
        prompt[node] = {"class_type": "LEditsPPEditConcept", "inputs": {
            "clip": ["1", 1], "text": text, "scale": 5.0, "threshold": threshold, "reverse": reverse,
            "warmup": 0, "cooldown": 10000, "mask_type": mask_type}}
        if previous:
            prompt[node]["inputs"]["concepts"] = [previous, 0]
        previous = node
    if previous:
        prompt["8"]["inputs"]["concepts"] = [previous, 0]
    return prompt


def read_latent(server, entry, node="11"):
    from safetensors.torch import load_file
    return load_file(str(server.output_file(entry, node, "latents")))["latent_tensor"]


def messages(entry, kind):
    return [data for event, data in entry["status"].get("messages", []) if event == kind]


def cached_nodes(entry):
    return {n for data in messages(entry, "execution_cached") for n in data.get("nodes", [])}


def ok(entry):
    return entry["status"].get("status_str") == "success"


def error_text(entry_or_body):
    """The error text of a failed history entry or a rejected /prompt body."""
    if isinstance(entry_or_body, dict) and "status" in entry_or_body:
        return " ".join(f"[{d.get('node_type')}] {d.get('exception_type')}: {d.get('exception_message')}"
                        for d in messages(entry_or_body, "execution_error"))
    return json.dumps(entry_or_body)


def with_prefix(prompt, prefix):
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        if node["class_type"] in ("SaveLatent", "SaveImage"):
            node["inputs"]["filename_prefix"] = prefix + "_" + node["inputs"]["filename_prefix"].split("_")[-1]
    return prompt


def wait_running(server, prompt_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = server.request("/queue")[1].get("queue_running", [])
        if any(item[1] == prompt_id for item in running):
            return
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not start in {timeout} s")


# -- 1. interrupts ------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["inversion", "edit"])
def test_interrupt_then_same_result_as_clean_run(server, tiny_ckpt, stage):
    """Interrupt mid-node; the re-queued prompt finishes and equals a clean (uncached) run."""
    image = write_image(server, f"rel_int_{stage}.png", 256, 256, seed=3)   # 32x32 latent
    steps, seed = 40, 101 if stage == "inversion" else 202
    target = "5" if stage == "inversion" else "8"
    prompt = prompt_for(tiny_ckpt["sd15"], image, steps=steps, seed=seed, prefix=f"rel_int_{stage}")
    if stage == "edit":
        # a short run first (the inversion gets cached), so the interrupted run only edits
        assert ok(server.run(with_prefix(prompt, "rel_int_warm")))
        prompt = prompt_for(tiny_ckpt["sd15"], image, steps=steps, seed=seed, prefix=f"rel_int_{stage}",
                            concepts=(("glasses", False), ("a red hat", True)))
    else:
        assert ok(server.run(prompt_for(tiny_ckpt["sd15"], image, steps=2, seed=1)))  # model loaded
    prompt_id = server.queue(prompt)
    wait_running(server, prompt_id)
    time.sleep(1.5)
    server.interrupt()
    entry = server.wait(prompt_id)
    interrupted = messages(entry, "execution_interrupted")
    assert not ok(entry) and interrupted, entry["status"]
    assert interrupted[0]["node_id"] == target, f"interrupted in {interrupted[0]} instead of node {target}"
    after = server.run(with_prefix(prompt, f"rel_after_{stage}"))
    assert ok(after), error_text(after)
    # a different prompt in between evicts the cache, then a clean run of the same prompt
    assert ok(server.run(prompt_for(tiny_ckpt["sd15"], image, steps=2, seed=seed + 1)))
    clean = server.run(with_prefix(prompt, f"rel_clean_{stage}"))
    assert ok(clean), error_text(clean)
    assert not {"5", "8"} & cached_nodes(clean), "the clean run was served from the cache"
    assert torch.equal(read_latent(server, after), read_latent(server, clean))


def test_interrupted_edit_leaves_no_patch_in_process(load_tiny, run_node):
    """In-process: the interrupt flag is raised at the 3rd UNet call of the edit (deterministic, as
    POST /interrupt does); the MODEL carries no LEDITS++ patch afterwards and the next edit equals
    the clean run before it."""
    import comfy.model_management as mm
    model, clip, _ = load_tiny("sd15")
    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))}
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
        sites = m.model_options.get("transformer_options", {}).get("patches_replace", {})
        return [(kind, site) for kind, entries in sites.items() for site, patch in entries.items()
                if getattr(patch, "is_ledits_capture", False)]
    assert not ledits_patches(model) and not ledits_patches(tripwire)
    assert state(model) == before and state(tripwire) == before_trip
    assert torch.equal(edit(model), reference)


# -- 2. a long session --------------------------------------------------------------------------
def test_twenty_prompts_memory_flat_deterministic_and_cached(server, tiny_ckpt):
    sizes = [(64, 64), (128, 96), (256, 256), (192, 128)]
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
def _edit(prompt, **inputs):
    prompt["8"]["inputs"].update(inputs)
    return prompt


def _concept(prompt, **inputs):
    prompt["20"]["inputs"].update(inputs)
    return prompt


def _inv(prompt, **inputs):
    prompt["5"]["inputs"].update(inputs)
    return prompt


def _many_concepts(ckpt, image, count):
    return prompt_for(ckpt, image, concepts=[(f"concept {i}", bool(i % 2)) for i in range(count)], steps=2)


def _custom(ckpt, image, latent_size=None, inversion=True, sigmas_from_inversion=True):
    prompt = prompt_for(ckpt, image, steps=3)
    del prompt["8"]
    guider_inputs = {"model": ["1", 0], "concepts": ["20", 0], "cfg": 7.5, "guidance_rescale": 0.0}
    if inversion:
        guider_inputs["inversion"] = ["5", 0]
    prompt.update({
        "30": {"class_type": "LEditsPPGuider", "inputs": guider_inputs},
        "31": {"class_type": "LEditsPPSampler", "inputs": {"inversion": ["5", 0]}},
        "32": {"class_type": "DisableNoise", "inputs": {}},
        "33": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["32", 0], "guider": ["30", 0], "sampler": ["31", 0], "sigmas": ["5", 2],
            "latent_image": ["5", 1]}},
    })
    prompt["11"]["inputs"]["samples"] = ["33", 0]
    if latent_size:
        prompt["34"] = {"class_type": "EmptyLatentImage", "inputs": {"width": latent_size[0], "height": latent_size[1],
                                                                     "batch_size": 1}}
        prompt["33"]["inputs"]["latent_image"] = ["34", 0]
    if not sigmas_from_inversion:
        prompt["35"] = {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras",
                                                                  "steps": 3, "denoise": 1.0}}
        prompt["33"]["inputs"]["sigmas"] = ["35", 0]
    return prompt


def _mask_node(prompt, **inputs):
    prompt["40"] = {"class_type": "LEditsPPMaskFromAttention", "inputs": dict(
        {"attention": ["8", 2], "concept": -1, "step": -1, "threshold": -1.0, "smoothing": True,
         "resolution": "image"}, **inputs)}
    prompt["41"] = {"class_type": "SaveImage", "inputs": {"images": ["40", 1], "filename_prefix": "rel_fuzz_heat"}}
    prompt["42"] = {"class_type": "MaskToImage", "inputs": {"mask": ["40", 0]}}
    prompt["43"] = {"class_type": "SaveImage", "inputs": {"images": ["42", 0], "filename_prefix": "rel_fuzz_mask"}}
    return prompt


def _capture(prompt, resolution, include_middle):
    prompt["45"] = {"class_type": "LEditsPPAttentionCapture", "inputs": {
        "model": ["1", 0], "resolution": resolution, "include_middle": include_middle}}
    prompt["5"]["inputs"]["model"] = prompt["8"]["inputs"]["model"] = ["45", 0]
    return prompt


def _user_mask(prompt, width, height, batch=1):
    prompt["46"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width, "height": height}}
    mask = ["46", 0]
    if batch > 1:
        prompt["47"] = {"class_type": "MaskToImage", "inputs": {"mask": mask}}
        prompt["48"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["47", 0], "amount": batch}}
        prompt["49"] = {"class_type": "ImageToMask", "inputs": {"image": ["48", 0], "channel": "red"}}
        mask = ["49", 0]
    prompt["20"]["inputs"]["mask"] = mask
    return prompt


def _other_model_inversion(prompt, ckpt):
    prompt["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
    prompt["8"]["inputs"]["model"] = ["9", 0]
    return prompt


def _source_prompt(prompt, cfg):
    prompt["13"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo", "clip": ["1", 1]}}
    prompt["5"]["inputs"].update(positive=["13", 0], source_cfg=cfg)
    prompt["8"]["inputs"].update(positive=["13", 0], cfg=cfg)
    return prompt


FUZZ = {
    # inversion inputs at their bounds
    "steps_1": lambda c, i: prompt_for(c, i, steps=1),
    "skip_0": lambda c, i: prompt_for(c, i, skip=0.0),
    "skip_0.95": lambda c, i: prompt_for(c, i, skip=0.95, steps=3),
    "seed_max": lambda c, i: prompt_for(c, i, seed=0xFFFFFFFFFFFFFFFF),
    "schedule_diffusers": lambda c, i: _inv(prompt_for(c, i), schedule="diffusers"),
    "batch_steps_64": lambda c, i: prompt_for(c, i, steps=3, batch_steps=64),
    "source_cfg_0": lambda c, i: _source_prompt(prompt_for(c, i), 0.0),
    "source_cfg_30": lambda c, i: _source_prompt(prompt_for(c, i), 30.0),
    "no_negative": lambda c, i: (lambda p: (p["5"]["inputs"].pop("negative"), p)[1])(prompt_for(c, i)),
    "inversion_batch_2": lambda c, i: prompt_for(c, i, batch=2),
    # concept inputs
    "concepts_0": lambda c, i: prompt_for(c, i, concepts=()),
    "concepts_64": lambda c, i: _many_concepts(c, i, 64),
    "threshold_0": lambda c, i: prompt_for(c, i, threshold=0.0),
    "threshold_1": lambda c, i: prompt_for(c, i, threshold=1.0),
    "scale_0": lambda c, i: _concept(prompt_for(c, i), scale=0.0),
    "scale_50": lambda c, i: _concept(prompt_for(c, i), scale=50.0),
    "warmup_after_last_step": lambda c, i: _concept(prompt_for(c, i), warmup=1000),
    "cooldown_0": lambda c, i: _concept(prompt_for(c, i), cooldown=0),
    "mask_type_attention": lambda c, i: prompt_for(c, i, mask_type="attention"),
    "mask_type_noise": lambda c, i: prompt_for(c, i, mask_type="noise"),
    "mask_type_none": lambda c, i: prompt_for(c, i, mask_type="none"),
    "long_text_300_tokens": lambda c, i: prompt_for(c, i, concepts=((" ".join(["cat"] * 300), False),)),
    "weighted_text": lambda c, i: prompt_for(c, i, concepts=(("(glasses:1.5), [hat]", False),)),
    "user_mask_other_size": lambda c, i: _user_mask(prompt_for(c, i), 37, 53),
    "user_mask_other_batch": lambda c, i: _user_mask(prompt_for(c, i, batch=2), 64, 64, batch=3),
    "user_mask_zero": lambda c, i: (lambda p: (p["46"]["inputs"].update(value=0.0), p)[1])(
        _user_mask(prompt_for(c, i), 64, 64)),
    # edit inputs
    "cfg_0_with_target": lambda c, i: _source_prompt(prompt_for(c, i), 0.0),
    "guidance_rescale_1": lambda c, i: _edit(prompt_for(c, i), guidance_rescale=1.0),
    "inversion_from_other_model": lambda c, i: _other_model_inversion(prompt_for(c, i), "tiny_sd2v.safetensors"),
    "inversion_from_sdxl_to_sd15": lambda c, i: _other_model_inversion(prompt_for(c, i), "tiny_sd15.safetensors"),
    # Guider / Sampler
    "custom_sampler": lambda c, i: _custom(c, i),
    "custom_sampler_latent_other_size": lambda c, i: _custom(c, i, latent_size=(128, 64)),
    "custom_sampler_other_sigmas": lambda c, i: _custom(c, i, sigmas_from_inversion=False),
    "guider_without_inversion": lambda c, i: _custom(c, i, inversion=False),
    # attention capture and masks
    "capture_latent/2": lambda c, i: _capture(prompt_for(c, i), "latent/2", False),
    "capture_latent/8_middle": lambda c, i: _capture(prompt_for(c, i), "latent/8", True),
    "capture_latent/4_middle": lambda c, i: _capture(prompt_for(c, i), "latent/4", True),
    "mask_all_concepts": lambda c, i: _mask_node(prompt_for(c, i)),
    "mask_concept_63": lambda c, i: _mask_node(prompt_for(c, i), concept=63),
    "mask_step_1000": lambda c, i: _mask_node(prompt_for(c, i), step=1000),
    "mask_step_0_threshold_0": lambda c, i: _mask_node(prompt_for(c, i), step=0, threshold=0.0),
    "mask_threshold_1_latent": lambda c, i: _mask_node(prompt_for(c, i), threshold=1.0, resolution="latent",
                                                       smoothing=False),
    "mask_without_concepts": lambda c, i: _mask_node(prompt_for(c, i, concepts=())),
    "mask_noise_type": lambda c, i: _mask_node(prompt_for(c, i, mask_type="noise")),
    # values out of range or of the wrong kind (rejected at validation)
    "steps_0": lambda c, i: prompt_for(c, i, steps=0),
    "skip_1": lambda c, i: prompt_for(c, i, skip=1.0),
    "threshold_2": lambda c, i: prompt_for(c, i, threshold=2.0),
    "mask_type_bogus": lambda c, i: prompt_for(c, i, mask_type="bogus"),
    "concepts_from_latent": lambda c, i: _edit(prompt_for(c, i), concepts=["4", 0]),
}


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
