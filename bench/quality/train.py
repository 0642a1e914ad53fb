"""Train (or load from the cache) the shapes world's VAEs and tiny models, and show they follow the prompt.

    ~/ComfyUI/.venv/bin/python bench/quality/train.py [--layouts sd15,sd3] [--seeds 0,1] [--steps N]

One CPU thread (others share the cores). Prints training time, file size, the loss with the true
vs a shuffled caption, and which prompted colours generated pictures contain.
"""
import argparse
import json
import sys
import time

import quality_host  # noqa: F401  (ComfyUI on sys.path, CPU)
import torch

import prompt_checks
import shapes_models


def log(text):
    print(text, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layouts", default="sd15,sd3")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=None, help="override the training steps")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--config", default="{}", help='JSON overrides of shapes_models.DEFAULTS, e.g. {"word_lr": 0}')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-checks", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("steps", args.steps), ("batch", args.batch)) if v is not None}
    overrides.update(json.loads(args.config))
    print("| model | seed | parameters | training | file | loss (first 100 → last 100 steps) | "
          "held-out loss, true / shuffled caption | generated: prompted colours present / chance |")
    print("|---|---|---|---|---|---|---|---|")
    for layout in args.layouts.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            model, clip, vae, info = shapes_models.trained_model(layout, seed, log=log, **overrides)
            variant = info["config"].get("world", "full")
            checks = "" if args.no_checks else prompt_checks.summary(model, clip, layout, variant)
            curve = info["curve"]
            print(f"| {layout} | {seed} | {info['parameters'] / 1e6:.1f} M | {info['train_s']:.0f} s "
                  f"({info['config']['steps']} × {info['config']['batch']}){' (cached)' if info['cached'] else ''} | "
                  f"{info['bytes'] / 2 ** 20:.1f} MiB | {curve[0][1]:.3f} → {curve[-1][1]:.3f} | {checks} |")
            vae_info = info["vae"]
            log(f"VAE {shapes_models.LATENT_CHANNELS[layout]} ch: PSNR {vae_info['psnr_initial']:.1f} dB constructed -> "
                f"{vae_info['psnr_trained']:.1f} dB trained, {vae_info['train_s']:.0f} s, {vae_info['bytes'] / 2 ** 20:.1f} MiB; "
                f"this model {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
