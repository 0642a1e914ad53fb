"""Would a mask that remembers earlier steps, or trusts the attention less, remove more? (issue #17,
sixth measurement)

    ~/ComfyUI/.venv/bin/python bench/quality/mask_levers.py --lever attention-mean --kept sd3_seed0 \
        --scenes 16 --edits remove --methods intersect

Runs measure.py with the pack's per-step concept mask replaced for the bench only:
- attention-mean / noise-mean / both-mean: the attention map (M1's input), the noise magnitude
  (M2's input) or both averaged over the concept's active steps so far, instead of this step's;
- attention-ema<d>: the same with an exponential average, weight d on the past;
- keep<share>: this step's mask united with the cells masked in at least `share` of the earlier
  active steps (the rule of Guided Edit's MASK output, applied while editing);
- attention-at<q>: M1 thresholded at quantile q instead of the concept's threshold (M2 keeps it), so
  the intersection leans on the noise mask.
Every other argument goes to measure.py. The pack itself is not changed. The memory is kept per
concept parameters (enough for the bench's edits, whose concepts differ; no user masks).
"""
import argparse
import sys

import measure
import quality_pipeline as P
import torch


def lever_mask(kind, masks_core):
    """A concept_mask(psi, concept, attention_map) with lever `kind`, and a reset for each run."""
    state = {}

    def blend(old, new, n):
        if old is None:
            return new
        if "-ema" in kind:
            d = float(kind.split("-ema")[1])
            return d * old + (1 - d) * new
        return old + (new - old) / n

    def concept_mask(psi, concept, attention_map=None):
        s = state.setdefault(concept, {"n": 0, "attention": None, "noise": None, "sum": None})
        s["n"] += 1
        m1 = m2 = None
        if concept.needs_attention:
            a = attention_map.float()
            if kind.startswith(("attention-mean", "attention-ema", "both-")):
                s["attention"] = a = blend(s["attention"], a, s["n"])
            q = float(kind[len("attention-at"):]) if kind.startswith("attention-at") else concept.threshold
            m1 = masks_core.with_frames(masks_core.attention_mask(a, q, tuple(psi.shape[-2:])), psi)
        if concept.mask_type in ("intersect", "noise"):
            v = masks_core.noise_magnitude(psi)
            if kind.startswith(("noise-", "both-")):
                s["noise"] = v = blend(s["noise"], v, s["n"])
            m2 = masks_core.quantile_mask(v, concept.threshold)
        mask = masks_core.combine_masks(m1, m2)
        if kind.startswith("keep") and mask is not None:
            earlier = s["sum"]
            s["sum"] = mask if earlier is None else earlier + mask
            if earlier is not None:
                mask = torch.maximum(mask, masks_core.edited_region(earlier, s["n"] - 1, share=float(kind[4:])))
        return mask

    return concept_mask, state.clear


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    ap.add_argument("--lever", required=True, help="attention-mean, noise-mean, both-mean, attention-ema<d>, "
                                                    "both-ema<d>, keep<share>, attention-at<q>")
    args, rest = ap.parse_known_args()
    P.node_classes()                                    # the pack as ComfyUI's loader imported it
    guidance, guider = P.pack_module("ledits_core.guidance"), P.pack_module("nodes.guider")
    concept_mask, reset = lever_mask(args.lever, P.pack_module("ledits_core.masks"))
    guidance.concept_mask = concept_mask
    reset_run = guider.LeditsGuider._reset_run

    def reset_both(self):
        reset()
        reset_run(self)

    guider.LeditsGuider._reset_run = reset_both
    print(f"mask lever: {args.lever}", file=sys.stderr)
    sys.argv = [sys.argv[0]] + rest
    measure.main()


if __name__ == "__main__":
    main()
