"""Does a trained model know *where* a named object is? (why removal fails, issue #17)

    ~/ComfyUI/.venv/bin/python bench/quality/guidance_localisation.py --layout sd3 [--seed 0]

Per held-out scene and noise level: the latent cells with the largest |prediction("red square")
- prediction(zero conditioning)| (the concept's guidance, before any mask), as many cells as the
object has, and their IoU with the object. Random cells score about 0.04 on the simple world. An
edit concept can only be masked onto the object at the noise levels where this is high.
"""
import argparse
import json

import quality_host  # noqa: F401
import torch
import torch.nn.functional as F

import shapes_models as M
import shapes_vae
import shapes_world as world

FLOW_LEVELS = (0.9, 0.7, 0.5, 0.3)
LEVELS = {"sd15": (14.6, 4.0, 1.5, 0.5)}           # else FLOW_LEVELS


@torch.no_grad()
def localisation(layout, seed=0, n=16, **config):
    """{sigma: mean IoU} of the top-|guidance| cells with the first object, over n held-out scenes."""
    patcher, clip, _, info = M.trained_model(layout, seed, **config)
    model = patcher.model
    captions = M.Captions(clip, layout, M.zero_for(patcher, clip, layout))
    g = torch.Generator().manual_seed(3)
    out = {level: [] for level in LEVELS.get(layout, FLOW_LEVELS)}
    for scene in world.held_out(n, variant=info["config"].get("world", "full")):
        x0 = M.model_latent(scene.image[None], layout)
        truth = (F.avg_pool2d(scene.masks[0][None, None].float(), 8)[0, 0] >= 0.5).flatten()
        phrase = world.object_phrase(*scene.objects[0])
        eps = torch.randn(x0.shape, generator=g)
        for level in out:
            sigma = torch.full((1,), level)
            x = M.noisy(model, x0, sigma, eps)
            guidance = M.predict(model, captions, x, sigma, [phrase]) - M.predict(model, captions, x, sigma, [None])
            top = torch.zeros_like(truth)
            top[shapes_vae.cells(guidance).abs().sum(1).flatten().topk(int(truth.sum())).indices] = True
            out[level].append(float((top & truth).sum() / (top | truth).sum()))
    return {level: sum(v) / len(v) for level, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layout", default="sd3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}", help="JSON overrides of shapes_models.DEFAULTS")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for level, iou in localisation(args.layout, args.seed, **json.loads(args.config)).items():
        print(f"{args.layout} seed {args.seed}: sigma {level:g}: IoU {iou:.3f}")


if __name__ == "__main__":
    main()
