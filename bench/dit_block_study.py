"""Which DiT blocks should LEDITS++ average for its attention mask M1? A measurement on trained tiny models.

Trains tiny DiTs of every joint-attention layout the pack supports, all ComfyUI's own classes
(bench/dit_block_models.py): SD3's MMDiT (6 joint blocks), Flux.1 (3 double + 6 single), Z-Image /
Lumina 2's NextDiT (6 main layers after text / image refiners), Qwen-Image (6 double-stream
blocks), HiDream (2 double + 4 single, image first, per-block Llama states) and Flux.2's block
traits (2 double + 8 single), on a synthetic captioned-shapes task whose ground-truth concept
locations are known. Then it scores every block and candidate block sets by how well the M1 map
localises the concept: IoU of the smoothed 0.9-quantile mask (ledits_core.masks.attention_mask)
and AUROC of the raw map, over held-out images noised along an edit schedule. The maps are
recorded by the pack's own capture (bench/dit_block_capture.py: nodes/families/<family>.py with
nodes/dit_capture.py or nodes/dit_call_order.py), one block per forward; a set's map is the mean
of its blocks' maps, which is what the pack's AttentionAccumulator gives for that set (checked
against a forward with blocks = "auto"). Also measures the capture cost.

One process, CPU, one thread:  ~/ComfyUI/.venv/bin/python bench/dit_block_study.py [--quick]
    [--families mmdit,flux,nextdit,qwen,hidream,flux2]
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import dit_block_capture as C
import dit_block_models as M
from ledits_core.masks import attention_mask

SIGMAS = [round(0.85 - 0.8 * i / 9, 3) for i in range(10)]        # a flow edit schedule, 0.85 -> 0.05
BANDS = (("high 0.58-0.85", 0.55, 1.0), ("mid 0.32-0.49", 0.3, 0.55), ("low 0.05-0.23", 0.0, 0.3))


# ----------------------------------------------------------------------------- candidate sets
def by_fraction(n, lo, hi):
    """Blocks whose centre (i + 0.5) / n lies in [lo, hi): a rule that scales with depth."""
    picked = [i for i in range(n) if lo <= (i + 0.5) / n < hi]
    return picked or [min(n - 1, int(lo * n))]


def candidate_sets(fam):
    """Named block-label sets, defined by depth fractions / block kinds so they transfer to full size."""
    lab = fam.labels
    if not fam.double_single:
        n = len(lab)
        pick = lambda lo, hi: [lab[i] for i in by_fraction(n, lo, hi)]  # noqa: E731
        return {"all": lab, "all but first": lab[1:], "all but last": lab[:-1], "first half": pick(0, .5),
                "second half": pick(.5, 1), "last two thirds": pick(1 / 3, 1), "first third": pick(0, 1 / 3),
                "middle third": pick(1 / 3, 2 / 3), "last third": pick(2 / 3, 1), "middle half": pick(.25, .75)}
    dbl = [x for x in lab if x[0] == "d"]
    sgl = [x for x in lab if x[0] == "s"]
    d = lambda lo, hi: [dbl[i] for i in by_fraction(len(dbl), lo, hi)]  # noqa: E731
    s = lambda lo, hi: [sgl[i] for i in by_fraction(len(sgl), lo, hi)]  # noqa: E731
    seq = dbl + sgl
    q = lambda lo, hi: [seq[i] for i in by_fraction(len(seq), lo, hi)]  # noqa: E731
    return {"all": seq, "double only": dbl, "single only": sgl, "double + single 1st half": dbl + s(0, .5),
            "double + single 2nd half": dbl + s(.5, 1), "double 2nd half + single": d(.5, 1) + sgl,
            "double 2nd half": d(.5, 1), "double 2nd half + single 1st half": d(.5, 1) + s(0, .5),
            "double + single last third": dbl + s(2 / 3, 1),
            "single 1st half": s(0, .5), "single 2nd half": s(.5, 1), "single middle third": s(1 / 3, 2 / 3),
            "sequence 1st half": q(0, .5), "sequence 2nd half": q(.5, 1), "sequence middle third": q(1 / 3, 2 / 3),
            "sequence last two thirds": q(1 / 3, 1),
            "ConceptAttention-like (double, last ~20%)": d(.79, 1),
            "FreeFlux-like (single 21-24 of 38)": s(21 / 38, 25 / 38)}


# ----------------------------------------------------------------------------- metrics
def auroc(score, positive):
    """Threshold-free: P(a random inside cell outranks a random outside cell)."""
    pos, n = int(positive.sum()), positive.numel()
    if pos == 0 or pos == n:
        return float("nan")
    ranks = torch.empty(n)
    ranks[score.flatten().argsort()] = torch.arange(1, n + 1, dtype=torch.float32)
    return float((ranks[positive.flatten()].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))


def iou(mask, truth):
    inter = (mask.bool() & truth).sum().item()
    union = (mask.bool() | truth).sum().item()
    return inter / union if union else float("nan")


def score_maps(maps, truth, grid):
    """maps (R, N) for R sigmas of one concept -> [(iou, auroc)] per sigma (the pack's M1 recipe)."""
    m1 = attention_mask(maps.reshape(-1, *grid), 0.9, grid)[:, 0]
    return [(iou(m1[r], truth), auroc(maps[r], truth.flatten())) for r in range(maps.shape[0])]


# ----------------------------------------------------------------------------- sanity checks
@torch.no_grad()
def prompt_dependence(fam, world, n, seed):
    """Held-out loss with the true prompt vs another image's prompt vs an empty prompt."""
    g = torch.Generator().manual_seed(seed)
    x0, tokens, _, _ = world.sample(n, g)
    out = {}
    for sigma in (0.3, 0.6, 0.9):
        eps = torch.randn(x0.shape, generator=g)
        xt, target = (1 - sigma) * x0 + sigma * eps, eps - x0
        s = torch.full((n,), sigma)
        row = []
        for tok in (tokens, tokens.roll(1, 0), torch.zeros_like(tokens)):
            row.append(F.mse_loss(fam(xt, s, tok), target).item())
        out[sigma] = row
    return out


@torch.no_grad()
def generation_check(fam, world, n, seed, steps=16):
    """Generate from noise (Euler on the flow ODE) and test which colours appear: prompted colours
    found, and (chance level) colours of a shuffled prompt found."""
    g = torch.Generator().manual_seed(seed)
    _, tokens, _, count = world.sample(n, g)
    x = torch.randn(n, M.CHANNELS, world.size, world.size, generator=g)
    sig = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        v = fam(x, torch.full((n,), float(sig[i])), tokens)
        x = x + (sig[i + 1] - sig[i]) * v
    col = world.colours / world.colours.norm(dim=1, keepdim=True)
    proj = torch.einsum("kc,nchw->nkhw", col, x)                   # component along each colour
    present = ((proj > 0.6 * world.colours.norm(dim=1)[None, :, None, None]).flatten(2).sum(-1) >= 3)

    def hit_rate(tok):
        hits = total = 0
        for i in range(n):
            for j in range(int(count[i])):
                c = int(tok[i, M.CONCEPT_SLOTS[j][0]]) - 2
                if 0 <= c < M.N_COLOURS:
                    hits += bool(present[i, c])
                    total += 1
        return hits / max(1, total)
    extra = sum(int(present[i].sum()) - int(count[i]) for i in range(n)) / n
    return hit_rate(tokens), hit_rate(tokens.roll(1, 0)), extra


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(fam, world, n_samples, seed, unit_prefix):
    """Per held-out image: the 10 noised copies, one forward per block with the pack's capture of
    that block; score each block, each candidate set (mean of its blocks' maps) and the pack's own
    "auto" forward; time a plain forward vs a captured one.
    Records are (unit, sigma, IoU, AUROC); a unit is one (model seed, image, concept)."""
    g = torch.Generator().manual_seed(seed)
    auto = [fam.labels[i] for i in C.resolved_blocks(fam, "auto")]
    sets = {**{f"block {lab}": [lab] for lab in fam.labels}, **candidate_sets(fam), AUTO: auto}
    records = {name: [] for name in [*BASELINES, *sets]}
    grid = (world.size // M.PATCH,) * 2
    sig = torch.tensor(SIGMAS)
    fwd_s = extra_s = calls = auto_gap = 0.0
    for i in range(n_samples):
        x0, tokens, masks, count = world.sample(1, g)
        truth = M.token_masks(masks)[0]
        eps = torch.randn(len(SIGMAS), *x0.shape[1:], generator=g)
        xt = (1 - sig)[:, None, None, None] * x0 + sig[:, None, None, None] * eps
        tok = tokens.expand(len(SIGMAS), -1)
        slots = list(range(int(count[0])))
        t0 = time.perf_counter()
        fam(xt.repeat(len(slots), 1, 1, 1), sig.repeat(len(slots)), tok.repeat(len(slots), 1))
        plain = time.perf_counter() - t0
        fwd_s += plain
        block_maps = {}
        for b, lab in enumerate(fam.labels):
            t0 = time.perf_counter()
            block_maps[lab] = C.capture_maps(fam, xt, sig, tok, slots, str(b))
            extra_s += time.perf_counter() - t0 - plain
            calls += len(slots)
        pack_auto = C.capture_maps(fam, xt, sig, tok, slots, "auto")
        for c in slots:
            mean = torch.stack([block_maps[lab][c] for lab in auto]).mean(0)
            auto_gap = max(auto_gap, float((mean - pack_auto[c]).abs().max() / pack_auto[c].abs().max()))
            if not truth[c].any():
                continue
            unit = f"{unit_prefix}/{i}/{c}"
            rnd = torch.rand(len(SIGMAS), grid[0] * grid[1], generator=g)
            candidates = {BASELINES[0]: rnd, BASELINES[1]: truth[c].float().flatten().expand(len(SIGMAS), -1) + 1e-3 * rnd}
            candidates.update({name: torch.stack([block_maps[lab][c] for lab in labels]).mean(0)
                               for name, labels in sets.items() if name != AUTO})
            candidates[AUTO] = pack_auto[c]
            for name, maps in candidates.items():
                records[name] += [(unit, s, *r) for s, r in zip(SIGMAS, score_maps(maps, truth[c], grid))]
    # a captured block costs (forward capturing that block - plain forward), per concept
    cost = {"forward_ms": 1e3 * fwd_s / n_samples, "capture_ms_per_block_concept": 1e3 * max(0.0, extra_s) / calls,
            "auto_gap": auto_gap}
    return sets, records, cost


AUTO = "current auto (the pack's forward)"
BASELINES = ("random map", "ground truth as map (ceiling)")


def summarise(rows, lo=0.0, hi=1.0):
    """Mean and std of IoU and AUROC over (unit, sigma) records with sigma in [lo, hi)."""
    sel = [r for r in rows if lo <= r[1] < hi]
    ious = [r[2] for r in sel if not math.isnan(r[2])]
    aucs = [r[3] for r in sel if not math.isnan(r[3])]
    return (statistics.fmean(ious), statistics.pstdev(ious), statistics.fmean(aucs), statistics.pstdev(aucs), len(sel))


def paired(rows, ref):
    """Mean difference (set - reference) of per-unit IoU (mean over sigmas) with its standard error."""
    def per_unit(rs):
        acc = {}
        for r in rs:
            if not math.isnan(r[2]):
                acc.setdefault(r[0], []).append(r[2])
        return {u: statistics.fmean(v) for u, v in acc.items()}
    a, b = per_unit(rows), per_unit(ref)
    d = [a[u] - b[u] for u in a if u in b]
    return statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d)


# full-size layouts: (name, double or joint blocks, single blocks, hidden, text tokens)
FULL_SIZE = {"mmdit": ("SD3.5 Large", 38, 0, 2432, 333), "flux": ("Flux.1", 19, 38, 3072, 512),
             "nextdit": ("Z-Image", 30, 0, 3840, 128), "qwen": ("Qwen-Image", 60, 0, 3072, 128),
             "hidream": ("HiDream I1", 16, 32, 2560, 384), "flux2": ("Flux.2 dev", 8, 48, 6144, 512)}


def full_size_sets(kind):
    """The candidate sets applied to the full-size block counts (FULL_SIZE)."""
    _, joint, single, _, _ = FULL_SIZE[kind]
    if not single:
        labels = [f"j{i}" for i in range(joint)]
    else:
        labels = [f"d{i}" for i in range(joint)] + [f"s{i}" for i in range(single)]
    return candidate_sets(argparse.Namespace(kind=kind, labels=labels, double_single=bool(single)))


def flops_overhead(kind):
    """Analytic FLOPs of recomputing one concept's M1 in one block, relative to one full forward,
    for the full-size models at 1024 px (4096 image tokens)."""
    _, joint, single, h, n_txt = FULL_SIZE[kind]
    n_img, blocks = 4096, joint + single
    t = n_img + n_txt
    per_block = 2 * 12 * h * h * t + 4 * t * t * h          # projections + MLP, QK^T and PV
    capture = 2 * n_img * t * h + 5 * n_img * t * (h // 128)  # image-query logits + softmax, all heads
    return capture / (blocks * per_block)


# ----------------------------------------------------------------------------- report
def report(kind, runs, sets, records, costs):
    p = print
    ref = records["all"]
    p(f"\n## {kind}: blocks {', '.join(l[6:] for l in sets if l.startswith('block '))}\n")
    for seed, r in runs.items():
        (curve, train_s, cached), checks, gen = r
        p(f"seed {seed}: training loss {curve[0][1]:.4f} (step {curve[0][0]}) -> {curve[-1][1]:.4f} (step {curve[-1][0]}), "
          f"{train_s:.0f} s{' (earlier run, cached weights)' if cached else ''}")
        p("  held-out loss at sigma: true prompt / another image's prompt / empty prompt:  " + ";  ".join(
            f"{s:.1f}: {row[0]:.3f} / {row[1]:.3f} / {row[2]:.3f}" for s, row in checks.items()))
        p(f"  generation (16 Euler steps): prompted colours present {gen[0]:.2f}, colours of a shuffled prompt "
          f"present {gen[1]:.2f} (chance), extra colours per image {gen[2]:+.2f}")
    n_units = len({r[0] for r in ref})
    p("\n| set | blocks | IoU@0.9 mean ± std | AUROC mean ± std | ΔIoU vs all (± s.e.) |")
    p("|---|---|---|---|---|")
    for name in [*BASELINES, *sets]:
        blocks = "" if name in BASELINES else ",".join(sets[name])
        d = paired(records[name], ref)
        p(f"| {name} | {blocks} | {summarise(records[name])[0]:.3f} ± {summarise(records[name])[1]:.3f} | "
          f"{summarise(records[name])[2]:.3f} ± {summarise(records[name])[3]:.3f} | {d[0]:+.3f} ± {d[1]:.3f} |")
    p(f"\n({len(ref)} (concept, sigma) pairs from {n_units} (model seed, image, concept) units; s.e. over units)")
    seeds = sorted({r[0].split("/")[0] for r in ref})
    if len(seeds) > 1:
        p("\nper model seed, IoU@0.9:\n")
        p("| set | " + " | ".join(seeds) + " |")
        p("|---|" + "---|" * len(seeds))
        for name in sets:
            p(f"| {name} | " + " | ".join(
                f"{summarise([r for r in records[name] if r[0].startswith(sd + '/')])[0]:.3f}" for sd in seeds) + " |")
    p("\nper noise band, IoU@0.9 / AUROC:\n")
    p("| set | " + " | ".join(b[0] for b in BANDS) + " |")
    p("|---|" + "---|" * len(BANDS))
    for name in sets:
        p(f"| {name} | " + " | ".join(
            "{:.3f} / {:.3f}".format(*summarise(records[name], lo, hi)[0:3:2]) for _, lo, hi in BANDS) + " |")
    fwd = statistics.fmean(c["forward_ms"] for c in costs)
    per = statistics.fmean(c["capture_ms_per_block_concept"] for c in costs)
    full = flops_overhead(kind)
    p(f"\ncost: forward of 10 rows {fwd:.1f} ms; M1 capture {per:.2f} ms per block per concept = {100 * per / fwd:.1f} % "
      f"of a forward (tiny model, measured); full size at 1024 px >= {100 * full:.2f} % (FLOPs)\n")
    big = full_size_sets(kind)
    p(f"\npack's auto forward vs the mean of its blocks' maps: max relative gap "
      f"{max(c['auto_gap'] for c in costs):.1e}\n")
    p(f"| set | tiny: blocks, measured cost per concept | {FULL_SIZE[kind][0]}: "
      "blocks | FLOP lower bound per concept |")
    p("|---|---|---|---|")
    for name in (n for n in sets if not n.startswith("block ") and n != AUTO):
        k, kb = len(sets[name]), big[name]
        p(f"| {name} | {k}: {100 * k * per / fwd:.0f} % | {len(kb)}: {compact(kb)} | {100 * len(kb) * full:.1f} % |")


def compact(labels):
    """j0,j1,j2,j5 -> j0-2,5 (per block kind)."""
    out, runs = [], {}
    for lab in labels:
        runs.setdefault(lab[0], []).append(int(lab[1:]))
    for kind, idx in runs.items():
        parts, start = [], idx[0]
        for a, b in zip(idx, idx[1:] + [None]):
            if b != a + 1:
                parts.append(f"{start}" if start == a else f"{start}-{a}")
                start = b
        out.append(kind + ",".join(parts))
    return " + ".join(out)


def trained(fam, world, steps, seed, args, more=0):
    """Train, or load the weights a previous run with the same settings left in --cache. `more`:
    continue the cached model of `steps` steps for that many steps more at lr / 2."""
    tag = f"_more{more}" if more else ""
    path = os.path.join(args.cache, f"{fam.kind}_seed{seed}_steps{steps}_batch{args.batch}_lr{args.lr:g}{tag}.pt")
    if args.cache and os.path.exists(path):
        state = torch.load(path)
        fam.net.load_state_dict(state["net"])
        fam.text.load_state_dict(state["text"])
        return state["curve"], state["train_s"], True
    before, before_s = [], 0.0
    if more:
        before, before_s, _ = trained(fam, world, steps, seed, args)
    t0 = time.perf_counter()
    curve = M.train(fam, world, more or steps, args.batch, args.lr / 2 if more else args.lr, seed=seed + 1 + bool(more),
                    log_every=max(10, (more or steps) // 10), log=lambda s: print(s, file=sys.stderr, flush=True))
    curve = before + [(step + steps if more else step, loss) for step, loss in curve]
    train_s = before_s + time.perf_counter() - t0
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
        torch.save({"net": fam.net.state_dict(), "text": fam.text.state_dict(), "curve": curve, "train_s": train_s}, path)
    return curve, train_s, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short training and evaluation (~2 min)")
    ap.add_argument("--families", default="mmdit,flux,nextdit,qwen,hidream,flux2")
    ap.add_argument("--seeds", default="0,1,2", help="one trained model per seed and family")
    ap.add_argument("--steps", type=int, default=600, help="training steps per model")
    ap.add_argument("--more-steps", type=int, default=0, help="continue the cached models this many steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-samples", type=int, default=40, help="held-out images per model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="/tmp/ledits_dit_block_study",
                    help="trained weights are kept here and reused by a run with the same settings ('' = off)")
    args = ap.parse_args()
    if args.quick:
        args.steps = 60
        args.batch, args.eval_samples, args.seeds = 16, 8, "0"
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    world = M.ShapeWorld(16, seed=0)
    print(f"# DiT block study\n\nsigmas {SIGMAS}; M1 = attention_mask(map, 0.9) on the 8x8 token grid; "
          f"seeds {args.seeds}; {args.eval_samples} held-out images per model")
    for kind in args.families.split(","):
        t0 = time.perf_counter()
        steps = args.steps
        runs, records, costs = {}, {}, []
        for seed in (int(v) for v in args.seeds.split(",")):
            fam = M.Family(kind, 16, seed=seed)
            training = trained(fam, world, steps, seed, args, args.more_steps)
            checks = prompt_dependence(fam, world, 64, seed=1000 + seed)
            gen = generation_check(fam, world, 32, seed=2000 + seed)
            sets, recs, cost = evaluate(fam, world, args.eval_samples, seed=3000 + seed, unit_prefix=f"seed{seed}")
            runs[seed] = (training, checks, gen)
            costs.append(cost)
            for name, rows in recs.items():
                records.setdefault(name, []).extend(rows)
        report(kind, runs, sets, records, costs)
        print(f"\n{kind}: {time.perf_counter() - t0:.0f} s ({steps} steps x batch {args.batch} per model)")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
