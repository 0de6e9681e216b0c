"""Batch processing of images and videos for ``hdvila upscale`` and ``hdvila edit``.

INPUT is an image, a video, or a folder searched recursively for both; OUTPUT is a file for a file
input and a folder for a folder input, where each result keeps its relative path (images become
``.png``, videos ``.mp4``).

- **Resumable**: a job whose output exists, made with the same settings (its ``.json`` sidecar says
  so), is skipped unless ``overwrite``; an output made with other settings is left alone and reported
  as that job's error, and one with no sidecar is kept with a warning. An output folder inside the
  input folder is not searched, and no output is ever an input file. Every write is atomic (a
  temporary file renamed when complete), so a killed run never leaves a partial output, and the
  temporary files a killed run left are removed when their job is redone.
- **One bad input does not stop the batch**: it is recorded in the errors report
  (``OUTPUT/hdvila-errors.jsonl`` for a folder, ``OUTPUT.errors.jsonl`` beside a single file; one
  JSON object per line with ``input`` and ``error``), and :func:`run_jobs` returns the count so the
  command exits non-zero.
- **Scales out**: with ``rank``/``world_size`` (e.g. from ``accelerate launch``) process ``rank``
  takes every ``world_size``-th job of the sorted list, so each file is done exactly once.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from hdvila.errors import InputFileError, UserError

ERRORS_NAME = "hdvila-errors"


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    kind: str     # 'image' or 'video'
    rel: str      # the input's path relative to INPUT ('' for a single file), as given to captions


def _kind(path: Path) -> str | None:
    from hdvila.imageio import IMAGE_SUFFIXES
    from hdvila.retrieval.index import VIDEO_SUFFIXES

    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def plan_jobs(src: str | os.PathLike, dst: str | os.PathLike) -> list[Job]:
    """The jobs for INPUT ``src`` and OUTPUT ``dst`` (module docstring), sorted by input path."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise InputFileError(f"{src}: no such file or folder.")
    if src.is_file():
        kind = _kind(src)
        if kind is None:
            raise InputFileError(f"{src}: not an image or a video (by its extension).")
        if dst.is_dir():
            dst = dst / (src.stem + (".png" if kind == "image" else ".mp4"))
        want = (".png", ".jpg", ".jpeg") if kind == "image" else (".mp4",)
        if dst.suffix.lower() not in want:
            raise UserError(f"{dst}: the output of an {kind} must end in {' or '.join(want)}, "
                            "or be an existing folder.")
        if _same_file(dst, src):
            raise UserError(f"{dst}: the output is the input file itself, which would be replaced; choose another "
                            "output path.")
        return [Job(src, dst, kind, src.name)]
    if not src.is_dir():
        raise InputFileError(f"{src}: not a regular file or a folder (a device or a pipe?); pass an image, a video "
                             f"or a folder of them.")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst} is a file; the output of a folder must be a folder.")
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: the output folder is the input folder, whose files would be replaced or mixed "
                        "with the results; choose another output folder.")
    jobs = []
    out = dst.resolve()
    for root, dirs, files in os.walk(src):  # an output folder inside the input folder is not input
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != out)
        for name in sorted(files):
            path = Path(root) / name
            kind = _kind(path)
            if kind is None or name.startswith("."):
                continue
            rel = path.relative_to(src)
            jobs.append(Job(path, dst / rel.with_suffix(".png" if kind == "image" else ".mp4"), kind, rel.as_posix()))
    if not jobs:
        raise InputFileError(f"{src}: no images or videos in this folder (searched recursively).")
    inputs = {j.src.resolve() for j in jobs}
    onto = [j for j in jobs if j.dst.resolve() in inputs or _same_file(j.dst, j.src)]
    if onto:
        raise UserError(f"{onto[0].dst}: this output would replace an input file; choose an output folder outside "
                        f"{src}.")
    names = [j.dst for j in jobs]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise UserError(f"inputs that differ only in their extension would write the same output: "
                        f"{sorted(map(str, clash))[:3]}; rename them.")
    return jobs


def _same_file(a: Path, b: Path) -> bool:
    """Whether paths ``a`` and ``b`` name one file (also through links or a case-insensitive file system)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def add_batch_arguments(parser, *, batch_size: int, batch_help: str, quiet_help: str = "no progress bars") -> None:
    """The options every batch command (``hdvila edit``, ``hdvila upscale``) shares: ``--batch-size``,
    ``--max-frames``, ``--overwrite``, ``--device`` and ``--quiet``."""
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"{batch_help} (default {batch_size})")
    parser.add_argument("--max-frames", type=int, default=2000, help="refuse longer videos (default 2000 frames)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help=quiet_help)


def check_batch_arguments(args) -> None:
    """Refuse bad values of :func:`add_batch_arguments`' options in one line, before any work."""
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")


class BatchRun(NamedTuple):
    """A batch command's run (:func:`start_batch`): this process's jobs are ``jobs[rank::world_size]``."""

    jobs: list[Job]
    rank: int
    world_size: int
    device: str | None
    report: Path  # the errors report (errors_path)

    def run(self, process: Callable[[list[Job]], None], args, settings: Callable[[Job], dict] | None = None) -> dict:
        """:func:`run_jobs` over this run's jobs with :func:`add_batch_arguments`' options."""
        return run_jobs(self.jobs, process, batch_size=args.batch_size, overwrite=args.overwrite,
                        errors_file=self.report, rank=self.rank, world_size=self.world_size,
                        progress=not args.quiet, settings=settings)


def start_batch(args) -> BatchRun:
    """The start of ``hdvila edit``/``hdvila upscale`` (``args.input``, ``args.output`` and
    :func:`add_batch_arguments`' options): the options checked, this process's share
    (:func:`process_share`), the jobs (:func:`plan_jobs`) and where the errors report goes."""
    check_batch_arguments(args)
    rank, world_size, device = process_share(args.device)
    return BatchRun(plan_jobs(args.input, args.output), rank, world_size, device,
                    errors_path(args.input, args.output, rank, world_size))


def process_share(device: str | None = None) -> tuple[int, int, str | None]:
    """(rank, world size, device) of this process. Under ``accelerate launch`` (or torchrun) with
    several processes, the rank and world size come from Accelerate, and when ``device`` is None or
    "auto" each process takes its own GPU (``cuda:LOCAL_RANK``); on CPU the processes join through
    gloo. A plain run is (0, 1, device)."""
    import torch
    from accelerate import PartialState

    from hdvila.device import get_device

    get_device(device)  # a bad --device fails here, in one line, before any work
    on_cpu = (device is not None and str(device).startswith("cpu")) or not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu)
    if state.num_processes > 1 and not on_cpu and (device is None or device == "auto"):
        device = str(state.device)
    return state.process_index, state.num_processes, device


def errors_path(src: str | os.PathLike, dst: str | os.PathLike, rank: int = 0, world_size: int = 1) -> Path:
    """Where the errors report of this run goes (one per process when several run)."""
    suffix = f".rank{rank}.jsonl" if world_size > 1 else ".jsonl"
    dst = Path(dst)
    return dst / f"{ERRORS_NAME}{suffix}" if Path(src).is_dir() else dst.with_name(dst.name + ".errors" + suffix)


def run_jobs(jobs: Sequence[Job], process: Callable[[list[Job]], None], *, batch_size: int = 8, overwrite: bool = False,
             errors_file: Path | None = None, rank: int = 0, world_size: int = 1, progress: bool = True,
             settings: Callable[[Job], dict] | None = None) -> dict:
    """Run ``process(batch)`` over this process's share of ``jobs``, ``batch_size`` images at a time
    (a video is a batch of its own). ``process`` writes each job's output atomically and raises
    :class:`~hdvila.errors.UserError` for a bad input; a failing batch is retried one job at a time so
    one bad file costs only itself (an ``OSError``, e.g. an unreadable input, is that file's error too).

    A job whose output exists is skipped as done, unless ``overwrite``. With ``settings(job)`` (the
    values its metadata sidecar ``OUTPUT.json`` must hold, None for a key it must not hold), an output
    whose sidecar records other values (another prompt, another command's output) is that job's error
    and is left as it is; an output with no readable sidecar (an earlier version's, or a file that is
    not this program's) is skipped, kept, and listed in ``"unrecorded"`` for a warning. A folder where
    an output file should go is an error. Returns ``{"done", "skipped", "failed", "errors",
    "unrecorded"}``."""
    from tqdm.auto import tqdm

    from hdvila.atomic import stale_temporaries

    mine = list(jobs)[rank::world_size]
    todo, blocked, unrecorded = [], [], []
    for job in mine:
        if job.dst.is_dir():
            blocked.append((job, f"{job.dst} is a folder where the output file should go; move it away or choose "
                                 "another output."))
        elif overwrite or not job.dst.is_file():
            todo.append(job)
        elif settings is not None and (why := _made_otherwise(job, settings(job))) is not None:
            if why:
                blocked.append((job, f"{job.dst} exists and was not made with these settings ({why}); pass "
                                     "--overwrite to replace it, or choose another output."))
            else:
                unrecorded.append(job)
    for job in todo:  # left by a killed run (the output and its ``.json`` metadata sidecar); this rank's jobs only
        for target in (job.dst, job.dst.with_name(job.dst.name + ".json")):
            for tmp in stale_temporaries(target):
                tmp.unlink(missing_ok=True)
    result = {"done": 0, "skipped": len(mine) - len(todo) - len(blocked), "failed": len(blocked),
              "errors": [{"input": str(job.src), "error": why} for job, why in blocked],
              "unrecorded": [str(job.dst) for job in unrecorded]}
    images = [j for j in todo if j.kind == "image"]
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)] + \
              [[j] for j in todo if j.kind == "video"]
    bar = tqdm(total=len(todo), unit="file", disable=not progress, desc="processing")
    for batch in batches:
        try:
            _attempt(process, batch)
            result["done"] += len(batch)
        except (UserError, OSError):
            for job in batch:  # find the bad one(s); the good ones are written now
                try:
                    _attempt(process, [job])
                    result["done"] += 1
                except UserError as e:
                    result["failed"] += 1
                    result["errors"].append({"input": str(job.src), "error": str(e)})
                except OSError as e:
                    result["failed"] += 1
                    result["errors"].append({"input": str(job.src), "error": f"{job.src} -> {job.dst}: "
                                             f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")})
        bar.update(len(batch))
    bar.close()
    if errors_file is not None:
        _write_errors(errors_file, result["errors"])
    return result


def finish(result: dict, summary: str, world_size: int = 1) -> int:
    """End a batch command: print ``summary`` and the first errors of ``result`` (from :func:`run_jobs`),
    then, with several processes, wait for all of them, and return the exit status (1 if any file
    failed here). The wait matters: the launcher (torchrun) stops every process as soon as one exits
    non-zero, so a process whose share had a bad file must not leave while the others still work."""
    print(summary, flush=True)
    unrecorded = result.get("unrecorded", [])
    if unrecorded:
        print(f"warning: kept {len(unrecorded)} existing output(s) with no record of how they were made (e.g. "
              f"{unrecorded[0]}, from an earlier version or not made by hdvila); pass --overwrite to redo them",
              file=sys.stderr)
    for e in result["errors"][:5]:
        print(error_line(e), file=sys.stderr)
    sys.stderr.flush()
    if world_size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    return 1 if result["failed"] else 0


def print_note(src, note: str) -> None:
    """One ``note: SRC: ...`` line on stderr for ``note`` (its own ``SRC: `` prefixes removed)."""
    if note:
        print(f"note: {src}: {note.replace(f'{src}: ', '')}", file=sys.stderr)


def write_with_meta(dst: Path, meta: dict, write: Callable[[], object]) -> None:
    """The metadata sidecar ``dst.json``, then ``write()`` (the output, written atomically): the output
    marks the job done, so a kill between the two redoes it; a failed write removes the sidecar,
    leaving nothing (every output of ``hdvila edit`` and ``hdvila upscale``)."""
    from hdvila.atomic import atomic_write_text

    sidecar = dst.with_name(dst.name + ".json")
    atomic_write_text(sidecar, json.dumps(meta, indent=1) + "\n")
    try:
        write()
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise


def _made_otherwise(job: Job, expected: dict) -> str | None:
    """None when the sidecar of ``job``'s existing output records the ``expected`` settings; "" when it
    has no readable sidecar (nothing says how it was made); else what differs."""
    sidecar = job.dst.with_name(job.dst.name + ".json")
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(recorded, dict):
        return ""
    for key, value in expected.items():
        if recorded.get(key) != value:
            return f"{key} {recorded.get(key)!r} there, {value!r} now"
    return None


def _attempt(process: Callable[[list[Job]], None], batch: list[Job]) -> None:
    for job in batch:
        job.dst.parent.mkdir(parents=True, exist_ok=True)
    process(batch)


def _write_errors(path: Path, errors: list[dict]) -> None:
    from hdvila.atomic import atomic_write_text

    if errors:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in errors))
    elif path.is_file():
        path.unlink()  # a clean rerun clears the report of an earlier one


def error_line(error: dict) -> str:
    """The stderr line for one entry of the errors report (``{"input", "error"}``): the message
    names its file already (nearly every one starts with the path), so the path is added only when
    it does not."""
    message, path = str(error["error"]), str(error["input"])
    return f"error: {message}" if path in message else f"error: {path}: {message}"
