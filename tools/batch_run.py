"""Batch mode of tools/ledits_edit.py: many images, in-process or on running ComfyUI servers.

ledits_edit.py parses the arguments (add_arguments adds the batch ones) and hands over here when
the run is a batch (wanted()). Both paths build every prompt with ledits_edit.edit_prompt (the one
source of the workflow), feed ComfyUI the same prepared PNG (batch_inputs.prepare) and commit the
same files, so a server run gives the in-process result. Exit codes: 0 every image done (or already
done), 1 some image failed (see results.jsonl), 2 bad arguments, 130 interrupted (Ctrl-C).
"""
import asyncio
import json
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import time

IN_PROCESS = "in-process"


def add_arguments(parser):
    group = parser.add_argument_group(
        "batch", "Several --image, a folder, --concepts-file or --server make a batch run: per image a "
        "folder <out>/<image name>/ with edited.png and one mask per concept, and a line in "
        "<out>/results.jsonl (input, concepts, seed, server, seconds, error).")
    group.add_argument("--concepts-file", metavar="FILE", help=(
        "per-image concepts, CSV or JSON (by suffix), keyed by the image file name. CSV: header "
        "image,add,remove,seed, several concepts in a cell separated by ';', seed optional, e.g. "
        "'cat.jpg,glasses;a red hat,cat,42'. JSON: {\"cat.jpg\": {\"add\": [\"glasses\"], \"remove\": "
        "[\"cat\"], \"seed\": 42}}. Listed images get exactly these concepts, others --add/--remove; "
        "without --image the listed files (relative to FILE's folder) are the input"))
    group.add_argument("--server", action="append", default=[], metavar="URL", help=(
        "run on this ComfyUI server (repeatable, e.g. http://127.0.0.1:8188) through its HTTP API instead "
        "of in-process; each image goes to the server with the shortest queue. --ckpt then names a file "
        "in the servers' models/checkpoints, and --model auto picks SDXL when that name contains 'xl'"))
    group.add_argument("--resume", action="store_true",
                       help="continue the batch in --out: skip images whose outputs are all there")
    group.add_argument("--queue-depth", type=int, default=2, metavar="N",
                       help="hand a server the next image while its queue holds fewer than N prompts (default 2)")


def wanted(args):
    """A batch: several images or a folder, a concepts file, servers or --resume."""
    images = args.image or []
    return bool(len(images) > 1 or any(pathlib.Path(i).expanduser().is_dir() for i in images)
                or args.concepts_file or args.server or args.resume)


class Bar:
    """One status line over all images: done / failed / remaining, images per minute, and what
    each worker (in-process or a server) is doing. Redrawn in place on a terminal; in a log, one
    line per finished image."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.stream = total, stream
        self.done = self.failed = 0
        self.started = None
        self.workers = {}
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = ""

    def start(self):
        self.started = time.monotonic()

    def rate(self):
        minutes = (time.monotonic() - self.started) / 60 if self.started else 0
        return self.done / minutes if minutes > 0 else 0.0

    def line(self):
        left = self.total - self.done - self.failed
        filled = int(20 * (self.done + self.failed) / max(1, self.total))
        busy = " | ".join(f"{re.sub('^https?://', '', w)}: {t}" for w, t in self.workers.items() if t)
        return (f"[{'#' * filled}{'-' * (20 - filled)}] {self.done} done, {self.failed} failed, {left} left, "
                f"{self.rate():.1f} img/min" + (f" | {busy}" if busy else ""))

    def draw(self, force=False):
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text[:160].ljust(len(self.last[:160])))
        elif force:
            self.stream.write(text + "\n")
        self.last = text
        self.stream.flush()

    def note(self, text):
        if self.tty and self.last:
            self.stream.write("\r" + " " * len(self.last[:160]) + "\r")
        self.stream.write(text + "\n")
        self.draw()

    def set(self, worker, text):
        self.workers[worker] = text
        self.draw()

    def finished(self, ok):
        self.done += ok
        self.failed += not ok
        self.draw(force=True)

    def close(self):
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


class NodeProgress:
    """What comfy_headless.execute reports to, forwarded to the batch bar for the in-process path."""

    def __init__(self, bar, job):
        self.bar, self.job, self.label, self.display = bar, job, "", {}

    def titles(self, nodes_module):
        self.display = getattr(nodes_module, "NODE_DISPLAY_NAME_MAPPINGS", {})

    def node_started(self, node_id):
        self.label = str(node_id)
        self.bar.set(IN_PROCESS, f"{self.job.name} node {node_id}")

    def step(self, value, total):
        self.bar.set(IN_PROCESS, f"{self.job.name} {value}/{total}")

    def finish(self):
        pass


def settings(args, tool, jobs):
    """The model side of the run: (ckpt name in the prompt, local ckpt path or None, sdxl, demo, steps, size)."""
    if args.server:
        if not args.ckpt:
            raise tool.UsageError("--server needs --ckpt: the name of a checkpoint file in the servers' "
                                  "models/checkpoints folder")
        name = args.ckpt
        sdxl = args.model == "sdxl" or (args.model == "auto" and "xl" in pathlib.Path(name).name.lower())
        return name, None, sdxl, False, *tool.run_defaults(args, False, sdxl)
    demo = args.ckpt is None
    root = tool.find_comfyui(args.comfyui)
    path = None if demo else tool.resolve_checkpoint(args.ckpt, root)
    sdxl = args.model == "sdxl" or (args.model == "auto" and path is not None and tool.looks_like_sdxl(path))
    name = path.name if path else "ledits_tiny_random_sd15.safetensors"
    return name, path, sdxl, demo, *tool.run_defaults(args, demo, sdxl)


def main(args, tool):
    """The batch run; returns the exit code."""
    inputs = tool.tool_module("batch_inputs")
    started = time.monotonic()
    try:
        if args.server and not all(re.match(r"^https?://[^/\s]+/?$", u) for u in args.server):
            raise tool.UsageError("--server takes a URL like http://127.0.0.1:8188 (scheme, host, port)")
        adds, removes = list(args.add), list(args.remove)
        if args.ckpt is None and not args.server and not adds and not removes and not args.concepts_file:
            adds, removes = ["glasses"], ["cat"]            # the tiny-model check, as for one image
        try:
            jobs = inputs.plan(args.image or [], args.concepts_file, adds, removes, args.seed)
        except inputs.InputError as error:
            raise tool.UsageError(str(error))
        ckpt, ckpt_path, sdxl, demo, steps, size = settings(args, tool, jobs)
        out_dir = pathlib.Path(args.out).expanduser().resolve()

        def build(job, image_name):
            """The API prompt of one image: ledits_edit.edit_prompt, nothing else."""
            return tool.edit_prompt(ckpt, image_name, job.adds, job.removes, steps=steps, skip=args.skip,
                                    seed=job.seed, add_scale=args.add_scale, remove_scale=args.remove_scale,
                                    threshold=args.threshold, sdxl=sdxl, prefix=inputs.safe_prefix(job))[0]
        if args.print_prompt:
            print(json.dumps({job.name: build(job, f"<{job.path.name}>") for job in jobs}, indent=1))
            return 0
        if (out_dir / inputs.RESULTS).exists() and not args.resume:
            raise tool.UsageError(f"{out_dir} already holds a batch run: add --resume to finish it, "
                                  "or give another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
        inputs.clean_partials(out_dir)
    except tool.UsageError as error:
        print(f"{tool.PROG}: error: {error}", file=sys.stderr)
        return 2
    todo = [job for job in jobs if not (args.resume and inputs.is_done(out_dir, job, tool))]
    skipped = len(jobs) - len(todo)
    where = ", ".join(args.server) if args.server else "in-process"
    print(f"{tool.PROG}: batch of {len(jobs)} images ({skipped} already done, {len(todo)} to run) on {where}; "
          f"workflow {'ledits_edit_sdxl' if sdxl else 'ledits_edit_sd15'}, {ckpt}, {steps} steps; output {out_dir}",
          file=sys.stderr)
    if demo:
        print("NOTE: no --ckpt given: using a tiny built-in RANDOM-WEIGHT model to check the install. "
              "Its output is noise, not an edit.", file=sys.stderr)
    bar = Bar(len(todo))

    def prepare(job):
        """Decode and fit the image; a bad one is recorded as failed and the batch goes on."""
        if job.png is not None:
            return True
        try:
            inputs.prepare(job, tool, size)
        except tool.UsageError as error:
            report(job, None, 0.0, error=str(error))
            return False
        if job.note:
            bar.note(f"note: {job.note}")
        return True

    def report(job, server, seconds, files=None, error=None, extra=None):
        line = dict(inputs.record(job, server, seconds, error), **(extra or {}))
        if error:
            inputs.append_result(out_dir, line)
            bar.note(f"FAILED {job.path.name}: {error}")
        else:
            inputs.commit(out_dir, job, files, line)
        job.png = None
        bar.finished(not error)

    status = "done"
    try:
        if todo and args.server:
            status = asyncio.run(run_on_servers(args, tool, inputs, todo, build, prepare, report, bar, ckpt))
        elif todo:
            run_in_process(args, tool, inputs, todo, build, prepare, report, bar, ckpt_path, demo)
    except tool.UsageError as error:
        bar.close()
        print(f"{tool.PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()
    seconds = time.monotonic() - started
    run_s = time.monotonic() - bar.started if bar.started else 0.0
    print(f"{tool.PROG}: {bar.done} done, {bar.failed} failed, {skipped} skipped (already done), "
          f"{len(todo) - bar.done - bar.failed} not run; {seconds:.1f} s in all, {run_s:.1f} s running "
          f"({bar.rate():.1f} images/min); results: {out_dir / inputs.RESULTS}", file=sys.stderr)
    if status == "interrupted":
        print(f"{tool.PROG}: interrupted: finished images are kept; run again with --resume to do the rest",
              file=sys.stderr)
        return 130
    return 1 if bar.failed else 0


def run_in_process(args, tool, inputs, jobs, build, prepare, report, bar, ckpt_path, demo):
    """ComfyUI imported once, one executor reused (its cache keeps the checkpoint loaded). Ctrl-C
    (comfy_headless.ctrl_c_interrupts): the running image stops at its next step, nothing of it is
    written, KeyboardInterrupt follows."""
    root = tool.find_comfyui(args.comfyui)
    work = pathlib.Path(tempfile.mkdtemp(prefix="ledits_batch_"))
    try:
        nodes_module, folder_paths = tool.headless.setup_comfyui(root, args.cpu, work, tool.PACK)
        if demo:
            tool.tiny_model_threads()
            ckpt_path = tool.tiny_checkpoint(work)
        elif args.tiny_classes:
            tool.tiny_models()
        folder_paths.add_model_folder_path("checkpoints", str(ckpt_path.parent))
        executor = tool.headless.new_executor()
        bar.start()
        with tool.headless.ctrl_c_interrupts() as stopped:
            run_jobs(tool, inputs, jobs, build, prepare, report, bar, work, nodes_module, executor, stopped)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_jobs(tool, inputs, jobs, build, prepare, report, bar, work, nodes_module, executor, stopped):
    """The in-process jobs one after another, until done or Ctrl-C (`stopped`)."""
    for job in jobs:
        if stopped:
            break
        if not prepare(job):
            continue
        image_name = f"job{job.index}.png"
        (work / "input" / image_name).write_bytes(job.png)
        started = time.monotonic()
        try:
            outputs = tool.headless.execute(build(job, image_name), nodes_module, NodeProgress(bar, job), tool.PROG,
                                            executor=executor)
            paths = [(name, tool.output_path(work, item)) for name, item in inputs.output_items(outputs, job, tool)]
            files = [(name, path.read_bytes()) for name, path in paths]
        except (tool.WorkflowError, RuntimeError) as error:
            if not stopped:
                report(job, IN_PROCESS, time.monotonic() - started, error=str(error))
            continue
        finally:
            bar.set(IN_PROCESS, None)
        report(job, IN_PROCESS, time.monotonic() - started, files=files)
        for _, path in paths:
            path.unlink(missing_ok=True)


async def run_on_servers(args, tool, inputs, jobs, build, prepare, report, bar, ckpt):
    """The server path; Ctrl-C sets `stop`: our prompts are removed and interrupted on the servers."""
    servers = tool.tool_module("batch_servers")
    batch = servers.ServerBatch(args.server, build, report, bar, tool, inputs, depth=args.queue_depth,
                                prepare=prepare)
    if not await batch.connect(ckpt):
        await batch.session.close()
        raise tool.UsageError("no usable --server (see the lines above)")
    print(f"{tool.PROG}: servers: " + ", ".join(f"{s.url} (ComfyUI {s.version})" for s in batch.servers),
          file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first_ctrl_c():
        """Stop cleanly; a second Ctrl-C gets Python's own handler back (KeyboardInterrupt)."""
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)
    loop.add_signal_handler(signal.SIGINT, first_ctrl_c)
    try:
        bar.start()
        finished = await batch.run(jobs, stop)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    if not finished:
        bar.note(f"{tool.PROG}: Ctrl-C: interrupted {batch.stopped['interrupted']} running and removed "
                 f"{batch.stopped['removed']} queued prompt(s) of this batch on the servers")
        return "interrupted"
    return "done"
