"""The harness itself: tiny checkpoints load and sample in the real host, the pack registers."""
import torch

PACK_NODES = ["LEditsPPInversion", "LEditsPPEditConcept", "LEditsPPAttentionCapture",
              "LEditsPPMaskFromAttention", "LEditsPPGuidedEdit", "LEditsPPGuider", "LEditsPPSampler"]


def test_pack_nodes_are_registered(comfy_host, node_class):
    print(f"ComfyUI {comfy_host['version']}")
    for node_id in PACK_NODES:
        assert node_class(node_id) is not None


def test_tiny_models_load_and_sample(load_tiny, run_node):
    for layout in ("sd15", "sd2v", "sdxl"):
        model, clip, vae = load_tiny(layout)
        pos = run_node("CLIPTextEncode", clip=clip, text="a cat")[0]
        neg = run_node("CLIPTextEncode", clip=clip, text="")[0]
        latent = run_node("EmptyLatentImage", width=64, height=64, batch_size=1)[0]
        out = run_node("KSampler", model=model, seed=1, steps=2, cfg=5.0, sampler_name="euler",
                       scheduler="normal", positive=pos, negative=neg, latent_image=latent, denoise=1.0)[0]
        assert bool(torch.isfinite(out["samples"]).all())
        image = run_node("VAEDecode", samples=out, vae=vae)[0]
        assert image.shape == (1, 64, 64, 3)
