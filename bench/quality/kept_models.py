"""Trained tiny models kept in the repository, small enough to keep (bench/quality/models/).

Training differs from CPU to CPU in its last bits, and two training seeds of the same recipe
edit very differently (bench/quality/README.md), so a test that trains its own model would test a
different model on every machine. The quality test loads one of these instead. A file holds only
what training changed: the denoiser (fp16) and the rows of the text encoders' word tables that
the world's captions use. Everything else is rebuilt from the seed exactly as training started
(shapes_models.build, distinct_words, local_words), and the VAE is the
constructed one (shapes_vae: an exact 8x8 cell average in, its inverse out; no trained decoder).

    ~/ComfyUI/.venv/bin/python bench/quality/kept_models.py --layout sd3 --seed 0 --config '{...}' --name sd3_seed0
"""
import argparse
import hashlib
import json
import os
import pathlib

import quality_host  # noqa: F401
import torch

import comfy.sd
import comfy.utils

import shapes_models as M
import shapes_vae
import shapes_world as world

KEPT = pathlib.Path(__file__).resolve().parent / "models"


def world_token_ids(clip, variant):
    """Per text encoder, every token id the variant's captions and concepts can produce (padding,
    start and end tokens included)."""
    words = world.VARIANTS[variant]
    texts = [" and ".join(f"a {c} {s}" for c in words["colours"] for s in words["shapes"]),
             ", ".join(words["backgrounds"]) + " on a", ""]
    ids = {}
    for text in texts:
        for encoder, batches in clip.tokenize(text).items():
            ids.setdefault(encoder, set()).update(int(t[0]) for batch in batches for t in batch)
    return {encoder: sorted(found) for encoder, found in ids.items()}


def text_encoder_fingerprint(clip, layout):
    """sha256 of the text encoders' weights: the rebuilt frozen CLIP must be the one training saw.
    An SD1.5 checkpoint has no CLIP text projection (SD1.5 uses no pooled output): the loader
    leaves it uninitialised, so it is left out there."""
    digest = hashlib.sha256()
    for name, tensor in sorted(clip.cond_stage_model.state_dict().items()):
        if layout == "sd15" and name.endswith("text_projection.weight"):
            continue
        digest.update(name.encode() + tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export(layout, seed, config, name):
    patcher, clip, _, info = M.trained_model(layout, seed, **config)
    variant = info["config"].get("world", "full")
    tensors = {f"denoiser.{k}": v.detach().half().contiguous()
               for k, v in patcher.model.diffusion_model.state_dict().items()}
    tables = M.word_tables(clip)
    for encoder, ids in world_token_ids(clip, variant).items():
        if encoder not in tables:              # an encoder the tiny model does not have
            continue
        index = torch.tensor(ids)
        tensors[f"words.{encoder}.ids"] = index
        tensors[f"words.{encoder}.rows"] = tables[encoder].detach()[index].half().contiguous()
    KEPT.mkdir(exist_ok=True)
    path = KEPT / f"{name}.safetensors"
    meta = {"layout": layout, "seed": str(seed), "config": json.dumps(info["config"]),
            "train_s": f"{info['train_s']:.0f}", "text_encoders": text_encoder_fingerprint(clip, layout)}
    comfy.utils.save_torch_file(tensors, str(path), metadata=meta)
    print(f"{path}: {path.stat().st_size / 2 ** 20:.2f} MiB")
    return path


def host_names(weights, net):
    """Weights named as this host's network names them: Flux's RMSNorm scale is `...norm.weight`
    on 0.33 and `...norm.scale` on 0.3.64."""
    own = set(net.state_dict())
    swap = {".weight": ".scale", ".scale": ".weight"}
    renamed = {}
    for key, value in weights.items():
        if key not in own:
            for old, new in swap.items():
                if key.endswith(old) and key[:-len(old)] + new in own:
                    key = key[:-len(old)] + new
                    break
        renamed[key] = value
    return renamed


def rebuilt(tensors, layout, seed, config):
    """(MODEL, CLIP, VAE) rebuilt from the seed with the kept weights put in."""
    patcher, clip, _ = M.build(layout, seed, config)
    M.distinct_words(clip, config.get("token_std"), seed)
    M.local_words(clip, config.get("word_mixing"))
    denoiser = {k[len("denoiser."):]: v for k, v in tensors.items() if k.startswith("denoiser.")}
    patcher.model.diffusion_model.load_state_dict(host_names(denoiser, patcher.model.diffusion_model), strict=True)
    with torch.no_grad():
        for encoder, table in M.word_tables(clip).items():
            if f"words.{encoder}.ids" in tensors:
                table[tensors[f"words.{encoder}.ids"].long()] = tensors[f"words.{encoder}.rows"].to(table.dtype)
    channels = M.LATENT_CHANNELS[layout]
    taesd = shapes_vae.build_taesd(channels).state_dict()
    return patcher, clip, M.vae_of(taesd, channels, M.latent_format_of(layout))


def checkpoint_file(name):
    """Where load() assembles the kept model `name` as a full checkpoint (the cache; named by the
    kept file's digest, so a new kept file gets a new checkpoint)."""
    digest = hashlib.sha256((KEPT / f"{name}.safetensors").read_bytes()).hexdigest()[:12]
    return M.CACHE / f"kept_{name}_{digest}.safetensors"


def load(name, log=print):
    """(MODEL, CLIP, VAE, info) of a kept model, through CheckpointLoaderSimple's loader (a full
    checkpoint is assembled once and cached); a tiny Flux, which no file can hold for ComfyUI's
    detection, is rebuilt in memory."""
    path = KEPT / f"{name}.safetensors"
    full = checkpoint_file(name)
    tensors, meta = comfy.utils.load_torch_file(str(path), return_metadata=True)
    layout, seed, config = meta["layout"], int(meta["seed"]), json.loads(meta["config"])
    info = {"config": config, "train_s": float(meta["train_s"]), "cached": full.exists(), "kept": str(path),
            "bytes": path.stat().st_size}
    M.tiny_models().register()
    if layout in M.IN_MEMORY:
        patcher, clip, vae = rebuilt(tensors, layout, seed, config)
    else:
        if not full.exists():
            M.CACHE.mkdir(parents=True, exist_ok=True)
            part = full.with_name(f"{full.stem}.{os.getpid()}.part")     # another process may assemble it too
            comfy.sd.save_checkpoint(str(part), *rebuilt(tensors, layout, seed, config))
            os.replace(part, full)
            log(f"assembled {full} from {path}")
        patcher, clip, vae = comfy.sd.load_checkpoint_guess_config(str(full))[:3]
    if text_encoder_fingerprint(clip, layout) != meta["text_encoders"]:         # both as CheckpointLoader loads them
        full.unlink(missing_ok=True)
        raise RuntimeError(f"{path.name}: the text encoders rebuilt from seed {seed} are not the ones the model "
                           "was trained with (this torch draws other random numbers); re-export it with "
                           "kept_models.py from a trained model")
    return patcher, clip, vae, info


def main():
    ap = argparse.ArgumentParser(description="Keep a trained model in bench/quality/models/.")
    ap.add_argument("--layout", default="sd3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}", help="JSON overrides of shapes_models.DEFAULTS")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    export(args.layout, args.seed, json.loads(args.config), args.name)


if __name__ == "__main__":
    main()
