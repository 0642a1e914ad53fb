"""Checks every flow family's host test runs the same way on its own tiny model: reconstruction
through both edit paths, a host scheduler's sigmas, and scale / reverse / mask coverage."""
import torch

from ledits_node_calls import concepts_for, guided_edit, invert


def check_reconstruction(run_node, model, latent, steps, negative, label, cfg=7.5):
    """GuidedEdit and LEditsPPGuider + LEditsPPSampler in SamplerCustomAdvanced replay the input."""
    inversion, noisy, sigmas = invert(run_node, model, latent, steps, negative)
    assert inversion.zs.shape == (steps, *latent["samples"].shape) and float(sigmas[0]) < 1.0
    errors = [(guided_edit(run_node, model, inversion, cfg=cfg)[0]["samples"] - latent["samples"]).abs().max().item()]
    guider = run_node("LEditsPPGuider", model=model, inversion=inversion, cfg=cfg, guidance_rescale=0.0)[0]
    out = run_node("SamplerCustomAdvanced", noise=run_node("DisableNoise")[0], guider=guider,
                   sampler=run_node("LEditsPPSampler", inversion=inversion)[0], sigmas=sigmas, latent_image=noisy)[0]
    errors.append((out["samples"] - latent["samples"]).abs().max().item())
    print(f"{label} steps={steps} latent={tuple(latent['samples'].shape)}: reconstruction max abs error "
          f"GuidedEdit {errors[0]:.3g}, SamplerCustomAdvanced {errors[1]:.3g}")
    assert max(errors) <= 1e-4


def check_user_sigmas(run_node, model, latent, negative, sigmas):
    """A host scheduler's sigmas (starting at 1, ending at 0) are made exact and reconstruct."""
    inversion, _, kept = run_node("LEditsPPInversion", model=model, latent=latent, steps=8, skip=0.0, seed=0,
                                  schedule="exact", source_cfg=3.5, negative=negative, sigmas=sigmas)
    assert 0.99 < float(kept[0]) < 1.0 and float(kept[-1]) > 0.0
    err = (guided_edit(run_node, model, inversion)[0]["samples"] - latent["samples"]).abs().max().item()
    print(f"user sigmas ({len(sigmas) - 1} steps): reconstruction max abs error {err:.3g}")
    assert err <= 1e-4


def check_scale_reverse_coverage(run_node, model, clip, latent, negative, label, cfg=7.5, zero_tolerance=1e-4):
    """Scale 0 reconstructs, scale 8 moves further than 2, reverse differs, and the attention- and
    noise-mask coverage follow the threshold (~ 1 - threshold)."""
    inversion = invert(run_node, model, latent, 6, negative)[0]
    original = latent["samples"]

    def run(scale, reverse=False, mask_type="intersect", threshold=0.8):
        concepts = concepts_for(run_node, clip, [("a lighthouse", scale, reverse, mask_type)], threshold)
        return guided_edit(run_node, model, inversion, concepts, cfg=cfg)

    assert (run(0.0)[0]["samples"] - original).abs().max().item() <= zero_tolerance
    small, large = run(2.0)[0]["samples"], run(8.0)[0]["samples"]
    d_small, d_large = (small - original).norm().item(), (large - original).norm().item()
    print(f"{label}: distance from the input at scale 2 / 8: {d_small:.4g} / {d_large:.4g}")
    assert 0 < d_small < d_large
    assert not torch.allclose(run(8.0, reverse=True)[0]["samples"], large)
    for threshold in (0.5, 0.8, 0.95):
        for mask_type in ("attention", "noise"):
            record = run(5.0, mask_type=mask_type, threshold=threshold)[2]
            coverage = torch.stack([step[0][1] for step in record.steps]).mean().item()
            print(f"{label} {mask_type} mask, threshold {threshold}: coverage {coverage:.3f}")
            assert abs(coverage - (1 - threshold)) <= 0.15
