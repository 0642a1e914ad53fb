"""The benchmark's report: versions, machine line and the Markdown tables of ratios."""
import os
import platform
import time

import psutil
import torch


def versions():
    """Python, torch, diffusers, transformers and ComfyUI versions."""
    import importlib.metadata as md
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("diffusers", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "-"
    try:
        import comfyui_version   # ComfyUI's folder is on sys.path
        out["ComfyUI"] = comfyui_version.__version__
    except ImportError:
        out["ComfyUI"] = "?"
    return out


def machine(device):
    """One line: CPU model, cores, threads, RAM (or the GPU name)."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, " \
           f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"


def print_table(args, s, scaling, precision, n, total):
    """The Markdown tables the README copies, with the date, machine and versions line."""
    size, steps = args.size, args.steps
    v = versions()
    print("\n" + "=" * 100)
    print(f"LEDITS++ benchmark, {time.strftime('%Y-%m-%d')}: {machine(args.device)}; " +
          ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"Random SD1.5-architecture weights (fp32), {size}x{size}, {steps} steps, skip {args.skip}, "
          f"{n} concepts, intersect masks, device {args.device}; total bench time {total:.0f} s\n")
    print("| phase | diffusers | pack | ComfyUI floor | pack / floor | diffusers / pack |")
    print("|---|---|---|---|---|---|")

    def fmt(x):
        return f"{x['s']:.2f} s, {x['calls']} calls / {x['rows']} rows" if x else "-"
    d_inv, d_edit = s.get("d_inv"), s.get("d_edit")
    p_inv, p_edit = s["p_inv"], s["p_edit"]
    # floor of the pack's phases: the same sampling rows, plus VAE encode (inversion) / decode (edit);
    # the encode+decode run is split half and half (both are in the floor row of the total)
    f_inv = dict(s["f_inv"], s=s["f_inv"]["s"] + s["f_vae"]["s"] / 2)
    f_edit = dict(s["f_edit"], s=s["f_edit"]["s"] + s["f_vae"]["s"] / 2)
    rows = [("inversion (incl. VAE encode)", d_inv, p_inv, f_inv), ("edit (incl. VAE decode)", d_edit, p_edit, f_edit)]
    tot = lambda *xs: None if any(x is None for x in xs) else \
        {"s": sum(x["s"] for x in xs), "calls": sum(x["calls"] for x in xs), "rows": sum(x["rows"] for x in xs)}
    rows.append(("inversion + edit", tot(d_inv, d_edit), tot(p_inv, p_edit), tot(f_inv, f_edit)))
    for name, d, p, f in rows:
        ratio_f = f"{p['s'] / f['s']:.3f}" if f else "-"
        ratio_d = f"**{d['s'] / p['s']:.2f}x**" if d else "-"
        print(f"| {name} | {fmt(d)} | {fmt(p)} | {fmt(f)} | {ratio_f} | {ratio_d} |")
    # memory
    print("\n| memory (GiB) | diffusers | pack | diffusers / pack |")
    print("|---|---|---|---|")
    if d_inv:
        print(f"| weights (parameter bytes) | {s['d_weights'] / 2**30:.2f} | {s['p_weights'] / 2**30:.2f} | |")
    for name, d, p in (("inversion: peak RSS", d_inv, p_inv), ("edit: peak RSS", d_edit, p_edit)):
        dp = f"{d['peak_gib']:.2f}" if d else "-"
        print(f"| {name} | {dp} | {p['peak_gib']:.2f} | |")
    for name, d, p in (("inversion: activation (peak - before)", d_inv, p_inv),
                       ("edit: activation (peak - before)", d_edit, p_edit)):
        dp = f"{d['act_gib']:.2f}" if d else "-"
        ratio = f"{d['act_gib'] / max(p['act_gib'], 1e-3):.1f}x" if d else "-"
        print(f"| {name} | {dp} | {p['act_gib']:.2f} | {ratio} |")
    # overhead of the pack's own work
    nodes_only = (p_inv["s"] + p_edit["s"]) / (s["f_inv"]["s"] + s["f_edit"]["s"] + s["f_vae"]["s"])
    edit_only = p_edit["s"] / (s["f_edit"]["s"] + s["f_vae"]["s"] / 2)
    print(f"\npack / floor end to end: {nodes_only:.3f} (edit alone {edit_only:.3f}); "
          f"UNet rows pack {p_inv['rows'] + p_edit['rows']} vs floor {s['f_inv']['rows'] + s['f_edit']['rows']}")
    if s.get("p_text"):
        print(f"concept text encoding ({n} Edit Concept nodes, CLIP): {s['p_text']['s']:.2f} s once per concept "
              f"set (cached by ComfyUI), outside the pack's edit time; diffusers' edit time includes its own")
    if s.get("d_unet"):
        u, fe = s["d_unet"], s["f_edit"]
        print(f"UNet alone, the edit's {u['calls']} calls / {u['rows']} rows: diffusers (SDPA) {u['s']:.2f} s, "
              f"ComfyUI (KSampler) {fe['s']:.2f} s; diffusers pipeline edit / its UNet alone "
              f"{d_edit['s'] / u['s']:.2f}")
    if "p_inv_batched" in s:
        b = s["p_inv_batched"]
        print(f"batched inversion ({b['calls']} calls / {b['rows']} rows): {b['s']:.2f} s vs {p_inv['s']:.2f} s "
              f"one step per call -> gain {p_inv['s'] / b['s']:.2f}x; activation {b['act_gib']:.2f} vs "
              f"{p_inv['act_gib']:.2f} GiB; z difference {s['batched_zs_err']:.2g}")
        if d_inv:
            total = b["s"] + p_edit["s"]
            print(f"inversion (batched) + edit: {total:.2f} s -> diffusers / pack "
                  f"{(d_inv['s'] + d_edit['s']) / total:.2f}x")
    if scaling:
        print("\n| scaling (no VAE) | pack Guided Edit | floor sampling | pack / floor | pack activation GiB |")
        print("|---|---|---|---|---|")
        for item in scaling:
            name, e, f = item[:3]
            print(f"| {name} | {e['s']:.2f} s ({e['rows']} rows) | {f['s']:.2f} s | {e['s'] / f['s']:.3f} | "
                  f"{e['act_gib']:.2f} |")
    if precision:
        print("\n| UNet weights / compute | reconstruction max abs (exact schedule) | edit: NaN/inf | "
              "edit vs fp32 edit, mean abs (max) | inversion + edit time |")
        print("|---|---|---|---|---|")
        for r in precision:
            print(f"| {r['dtype']} / {r['compute']} | {r['recon']:.2e} | {r['nonfinite']} | "
                  f"{r['vs_fp32_mean']:.2e} ({r['vs_fp32_max']:.2e}) | {r['s']:.1f} s |")
    print("=" * 100, flush=True)
