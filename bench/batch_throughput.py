"""Throughput of tools/ledits_edit.py batch mode: in-process vs one vs two local ComfyUI servers,
and the per-image cost of the HTTP path (issue #11 part 4).

    COMFYUI_PATH=~/ComfyUI ~/ComfyUI/.venv/bin/python bench/batch_throughput.py [--images 12 --size 128 --steps 4]

Tiny random SD1.5 model (tools/tiny_models.py), servers started as the host tests start them
(tests/host/server_fixtures.start_server: temp folders, the pack and the tiny model classes). The
tool runs as a subprocess, as users run it. Each phase uses its own seed so no server answers from
its cache; the servers are warmed up first (checkpoint loaded). Figures:
* images/min = steady state from results.jsonl: (N - 1) / (last - first finish time);
* per image (one server, --queue-depth 1, so images do not overlap): the tool's seconds per image
  (upload -> outputs written), the server's own run time (history timestamps) and in-process seconds.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "ledits_edit.py"
CKPT = "tiny_sd15.safetensors"


def by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tiny_checkpoint(comfy_root, folder):
    """The tiny SD1.5 file, written by tools/tiny_models.py in a child Python (keeps ComfyUI out of here)."""
    code = ("import sys, os, importlib.util; sys.path.insert(0, sys.argv[1]); os.chdir(sys.argv[1]); "
            "import comfy.cli_args; comfy.cli_args.args.cpu = True; "
            "s = importlib.util.spec_from_file_location('t', sys.argv[2]); m = importlib.util.module_from_spec(s); "
            "s.loader.exec_module(m); m.write_checkpoint('sd15', sys.argv[3], seed=0)")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code, str(comfy_root), str(REPO / "tools" / "tiny_models.py"),
                    str(folder / CKPT)], check=True, capture_output=True)
    return folder / CKPT


def write_images(folder, count, size):
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def run_tool(args, out, env):
    """One batch run; returns the results.jsonl lines (the run must succeed)."""
    proc = subprocess.run([sys.executable, str(TOOL), *map(str, args), "--out", str(out)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"batch run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def per_minute(lines):
    stamps = sorted(line["finished_unix"] for line in lines)
    return 60 * (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0


def median(lines, key, skip_first=True):
    values = [line[key] for line in lines[1 if skip_first else 0:] if line.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def load_average():
    try:
        return pathlib.Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", type=int, default=128, help="square test images, px (default 128)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", default="default,1", help="torch threads per process to measure, comma-separated: "
                   "'default' (torch's choice: one per core) and/or a number (OMP_NUM_THREADS); default: default,1")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (outputs, server logs)")
    args = p.parse_args()
    root = pathlib.Path(os.environ.get("COMFYUI_PATH", "")).expanduser()
    if not (root / "main.py").is_file():
        raise SystemExit("set COMFYUI_PATH to a ComfyUI folder and run this with its Python")
    fixtures = by_path("ledits_bench_server_fixtures", REPO / "tests" / "host" / "server_fixtures.py")
    work = pathlib.Path(tempfile.mkdtemp(prefix="ledits_batch_bench_"))
    ckpt = tiny_checkpoint(root, work / "checkpoints")
    images = write_images(work / "images", args.images, args.size)
    common = ["--image", images, "--add", "glasses", "--remove", "cat", "--steps", args.steps, "--size", 0]
    rows, seed = {}, 0
    settings = [t.strip() for t in args.threads.split(",") if t.strip()]
    label_of = {t: f"{os.cpu_count()} threads" if t == "default" else f"{t} thread{'s' * (t != '1')}" for t in settings}
    for threads in settings:
        env = dict(os.environ, COMFYUI_PATH=str(root))
        extra = {} if threads == "default" else {"OMP_NUM_THREADS": threads}
        env.update(extra)
        label = label_of[threads]
        seed += 1
        rows[f"in-process, {label}"] = (run_tool(common + ["--ckpt", ckpt, "--tiny-classes", "--seed", seed],
                                                 work / f"inproc_{threads}", env), load_average())
        servers = []
        try:
            servers = [fixtures.start_server(root, work / f"server{i}_{threads}", ckpt.parent, env=extra)
                       for i in range(2)]
            urls = [arg for s in servers for arg in ("--server", s.url)]
            run_tool(["--image", images / "img000.png", "--image", images / "img001.png", "--add", "x",
                      "--steps", 1, "--ckpt", CKPT] + urls, work / f"warmup_{threads}", env)   # both load the model
            for name, more in ((f"1 server, {label}, depth 1", urls[:2] + ["--queue-depth", 1]),
                               (f"1 server, {label}", urls[:2]), (f"2 servers, {label} each", urls)):
                seed += 1                                    # a new seed: nothing comes from a server's cache
                rows[name] = (run_tool(common + ["--ckpt", CKPT, "--seed", seed] + more,
                                       work / f"run{seed}", env), load_average())
        finally:
            for server in servers:
                server.stop()
    print(f"\n{args.images} images {args.size}x{args.size}, {args.steps} steps, 2 concepts, tiny SD1.5; "
          f"{os.cpu_count()} CPUs\n")
    print("| run | images/min | s per image (tool) | s per image (server's own run) | load avg after |")
    print("|---|---|---|---|---|")
    for name, (lines, load) in rows.items():
        print(f"| {name} | {per_minute(lines):.1f} | {median(lines, 'seconds'):.2f} | "
              f"{median(lines, 'exec_seconds'):.2f} | {load} |")
    for threads in label_of.values():
        inproc, http = median(rows[f"in-process, {threads}"][0], "seconds"), rows[f"1 server, {threads}, depth 1"][0]
        wire = statistics.median([line["seconds"] - line["exec_seconds"] for line in http[1:]])
        print(f"\nHTTP path per image, {threads} (one server, one image at a time): "
              f"{median(http, 'seconds') - inproc:+.3f} s vs in-process (medians); {wire:.3f} s of it outside the "
              "server's run (upload, queue, websocket, /history, /view)")
    if args.keep:
        print(f"scratch folder (outputs, server logs): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
