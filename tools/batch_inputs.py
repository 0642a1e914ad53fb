"""Batch edits, the input side: which images, which concepts per image, how each image is prepared
and where its outputs go. Shared by the in-process and the server paths of tools/batch_run.py, so
both feed ComfyUI the same PNG bytes and write the same files (needed for identical results).

Concepts file (--concepts-file), CSV or JSON, keyed by the image's file name:

    image,add,remove,seed                 {"cat.jpg": {"add": ["glasses", "a red hat"],
    cat.jpg,glasses;a red hat,cat,42                   "remove": ["cat"], "seed": 42},
    dog.png,,dog,                           "dog.png": {"remove": ["dog"]}}

Several concepts in one CSV cell are separated by ';'. seed is optional (default --seed). A listed
image gets exactly the file's concepts; an unlisted one gets --add/--remove. Without --image, the
images are the listed names, relative to the concepts file's folder.
"""
import csv
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil
import time

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
VIDEO_REFUSAL = ("is a video: this tool runs the image workflows (SD1.5 / SDXL checkpoints) only; edit clips "
                 "in ComfyUI with workflows/ledits_edit_wan.json (WAN needs its own model, text encoder and VAE "
                 "files and a video loader)")
RESULTS = "results.jsonl"
PARTIAL = ".partial-"          # a job's outputs are written into "<out>/.<name>.partial-<pid>/" first


class InputError(Exception):
    """Bad batch arguments or concepts file: one line, exit code 2 (before anything runs)."""


@dataclasses.dataclass
class Job:
    """One image of the batch with its concepts, seed and output folder name."""
    index: int
    path: pathlib.Path
    name: str                               # output folder under --out
    adds: list
    removes: list
    seed: int
    png: bytes = None                       # prepared input (set by prepare())
    size: tuple = None
    note: str = ""

    def concepts(self):
        return {"add": list(self.adds), "remove": list(self.removes)}


# -- images --------------------------------------------------------------------------------------

def image_files(paths):
    """Files given one by one are taken as they are; folders give their images (not recursive)."""
    found = []
    for raw in paths:
        path = pathlib.Path(raw).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            raise InputError(f"{path} {VIDEO_REFUSAL}")
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"cannot read image {path}: no such file or folder")
    if not found:
        raise InputError("no images found (png, jpg, jpeg, webp) in " + ", ".join(map(str, paths)))
    return [p.resolve() for p in found]


def output_names(paths):
    """Folder names for the outputs: the file's stem, made unique with the suffix, then a counter."""
    stems = [p.stem for p in paths]
    names, taken = [], set()
    for path, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{stem}-{path.suffix.lstrip('.').lower()}"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        names.append(name)
    return names


# -- concepts file -------------------------------------------------------------------------------

def _concept_list(value, where):
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = value.split(";")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise InputError(f"{where}: expected a list of texts, got {value!r}")
    return [item.strip() for item in items if item.strip()]


def _seed(value, where):
    if value is None or value == "":
        return None
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: seed must be an integer, got {value!r}")
    if not 0 <= seed < 2 ** 64:
        raise InputError(f"{where}: seed must be between 0 and 2^64-1")
    return seed


def read_concepts_file(path):
    """name -> (adds, removes, seed or None), from the CSV or JSON format of this module's docstring."""
    path = pathlib.Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputError(f"cannot read concepts file {path}: {error.strerror or error}")
    rows = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{path.name}: not valid JSON: {error}")
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise InputError(f'{path.name}: expected {{"image.png": {{"add": [...], "remove": [...], '
                             '"seed": 1}, ...}')
        for name, entry in data.items():
            unknown = set(entry) - {"add", "remove", "seed"}
            if unknown:
                raise InputError(f"{path.name}: {name}: unknown keys {sorted(unknown)} (add, remove, seed)")
            rows.append((name, entry.get("add"), entry.get("remove"), entry.get("seed")))
    else:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or []]
        if "image" not in columns or not set(columns) <= {"image", "add", "remove", "seed"}:
            raise InputError(f"{path.name}: the CSV header must be image,add,remove[,seed], got {','.join(columns)}")
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            if (row.get("image") or "").strip():
                rows.append((row["image"].strip(), row.get("add"), row.get("remove"), row.get("seed")))
    table = {}
    for name, adds, removes, seed in rows:
        where = f"{path.name}: {name}"
        if name in table:
            raise InputError(f"{where}: listed twice")
        table[name] = (_concept_list(adds, where), _concept_list(removes, where), _seed(seed, where))
    if not table:
        raise InputError(f"{path.name}: no images listed")
    return table


# -- the plan ------------------------------------------------------------------------------------

def plan(images, concepts_file, adds, removes, seed):
    """The jobs of the batch, in input order; every problem found here stops the run before it starts."""
    table = read_concepts_file(concepts_file) if concepts_file else {}
    if not images:
        if not table:
            raise InputError("no input: give --image (a file or folder, repeatable) or --concepts-file")
        base = pathlib.Path(concepts_file).expanduser().resolve().parent
        images = [str(base / name) for name in table]
    paths = image_files(images)
    if table:
        by_name = {}
        for path in paths:
            by_name.setdefault(path.name, []).append(path)
        for name in table:
            key = pathlib.Path(name).name
            if key not in by_name:
                raise InputError(f"{pathlib.Path(concepts_file).name}: {name} is not among the input images")
            if len(by_name[key]) > 1:
                raise InputError(f"{name}: several input images have this file name; the concepts file "
                                 "cannot tell them apart")
        table = {pathlib.Path(k).name: v for k, v in table.items()}
    jobs = []
    for index, (path, name) in enumerate(zip(paths, output_names(paths))):
        entry = table.get(path.name)
        job_adds, job_removes, job_seed = entry if entry else (list(adds), list(removes), None)
        if not job_adds and not job_removes:
            raise InputError(f"{path.name}: nothing to edit: give --add/--remove or list it in the concepts file")
        if any(not t.strip() for t in job_adds + job_removes):
            raise InputError(f"{path.name}: a concept text is empty")
        jobs.append(Job(index, path, name, job_adds, job_removes, seed if job_seed is None else job_seed))
    return jobs


def prepare(job, tool, limit):
    """Decode (EXIF orientation applied by tool.check_image), fit to `limit` px and multiples of 8,
    encode as PNG. Raises tool.UsageError with the reason for an unreadable image."""
    image = tool.check_image(job.path)
    before = image.size
    image = tool.fit_size(image, limit)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    job.png, job.size = buffer.getvalue(), image.size
    if image.size != before:
        rule = f"long side <= {limit} px, " if limit and max(before) > limit else ""
        job.note = (f"{job.path.name}: {before[0]}x{before[1]} -> {image.size[0]}x{image.size[1]} "
                    f"({rule}sides snapped to multiples of 8)")
    return job


# -- outputs -------------------------------------------------------------------------------------

def expected_files(job, tool):
    """The files a finished job has in its folder: edited.png and one mask per concept."""
    concepts = [(t, False) for t in job.adds] + [(t, True) for t in job.removes]
    return ["edited.png"] + [tool.mask_name(i, text, reverse) + ".png" for i, (text, reverse) in enumerate(concepts)]


def output_items(outputs, job, tool):
    """(file name, ComfyUI output entry) pairs from a prompt's outputs (node 10 = Save Image,
    node 12 = the concept masks, one per concept, in concept order); ComfyUI's own file names are
    never predicted, they come from the outputs (host_testing.md §6)."""
    names = expected_files(job, tool)
    items = outputs.get("10", {}).get("images", [])[:1] + outputs.get("12", {}).get("images", [])
    if len(items) != len(names):
        raise RuntimeError(f"the workflow returned {len(items)} images, expected {len(names)} "
                           "(the edited image and one mask per concept)")
    return list(zip(names, items))


def is_done(out_dir, job, tool):
    folder = out_dir / job.name
    return all((folder / name).is_file() for name in expected_files(job, tool))


def clean_partials(out_dir):
    """Leftovers of a run that was killed while writing: never finished, safe to delete."""
    for path in out_dir.glob(f".*{PARTIAL}*"):
        shutil.rmtree(path, ignore_errors=True)


def commit(out_dir, job, files, line):
    """Write one finished job: its files into a hidden temp folder, renamed into place, then its
    results.jsonl line. Synchronous on purpose: nothing can cut in between, and a crash leaves at
    most a hidden .partial folder, never a folder or a line that looks finished."""
    final = out_dir / job.name
    temp = out_dir / f".{job.name}{PARTIAL}{os.getpid()}"
    temp.mkdir(parents=True, exist_ok=True)
    try:
        for name, data in files:
            (temp / name).write_bytes(data)
        if final.exists():                     # --resume of an incomplete folder: replace it whole
            old = out_dir / f".{job.name}{PARTIAL}old-{os.getpid()}"
            final.rename(old)
            shutil.rmtree(old)
        temp.rename(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    line["files"] = [name for name, _ in files]
    append_result(out_dir, line)


def append_result(out_dir, record):
    """One complete JSON line per finished (or failed) image, flushed to disk at once."""
    with open(out_dir / RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def record(job, server, seconds, error=None):
    """The results.jsonl fields of one image (the caller adds "files" when it succeeded)."""
    return {"input": str(job.path), "output": job.name, "status": "failed" if error else "done",
            "concepts": job.concepts(), "seed": job.seed, "size": list(job.size) if job.size else None,
            "server": server, "seconds": round(seconds, 3), "error": error, "finished_unix": round(time.time(), 3)}


def safe_prefix(job):
    """A SaveImage filename_prefix for this job (subfolder ledits_batch/ of ComfyUI's output)."""
    return "ledits_batch/" + (re.sub(r"[^A-Za-z0-9._-]+", "-", job.name).strip("-.") or "image")
