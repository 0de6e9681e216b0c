"""Atomic file output: write to a temporary file beside the target, then rename.

A process killed mid-write leaves at most a hidden ``.*.tmp`` file, never a partial output under the
final name. ``os.replace`` is atomic on POSIX and Windows when both paths are on one file system,
which holds because the temporary file lives in the target's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

#: Name prefixes of the temporaries of :func:`atomic_path` and :func:`atomic_dir` (``.old-`` is a
#: replaced folder waiting to be deleted).
TEMP_PREFIXES = (".tmp-", ".old-")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on error removed.

    ``suffix`` defaults to the target's suffix so that writers choosing a format by extension
    (PIL, PyAV) see the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}.", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files that :func:`atomic_path` calls for ``path`` left behind when a process was
    killed mid-write (``.tmp-STEM.XXXXXXXX.SUFFIX`` beside it; only ones made for exactly this path)."""
    import glob
    import re

    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.tmp-{re.escape(path.stem)}\.[a-z0-9_]{{8}}{re.escape(path.suffix)}$")
    return [p for p in path.parent.glob(f".tmp-{glob.escape(path.stem)}.*") if pattern.match(p.name)]


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a temporary file or folder of :func:`atomic_path` / :func:`atomic_dir`
    (a write in progress, or one a killed process left), never a finished output."""
    return Path(path).name.startswith(TEMP_PREFIXES)


def finished_files(folder: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """The finished files under ``folder`` (recursive) whose names match ``pattern``, sorted: what a
    reader may open while a writer runs. Temporaries, and anything inside a temporary folder, are left
    out (``rglob("*.png")`` also matches ``.tmp-x.k2j_9xq0.png``, a write in progress)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob(pattern)
                  if p.is_file() and not any(is_temporary(part) for part in p.relative_to(folder).parts))


def check_writable(path: str | os.PathLike, label: str | None = None, kind: str | None = None) -> None:
    """Raise a one-line :class:`~hdvila.errors.UserError` unless a file or folder can be written at
    ``path`` (an existing folder, or a new name whose missing folders can be made): checked before
    any work by trying a temporary file in the nearest folder that exists, so a run never computes
    for minutes and then fails at its first write. Nothing is left behind. ``kind`` "file" also
    refuses an existing folder at ``path``, "folder" an existing file (None: either will do)."""
    from hdvila.errors import UserError

    path = Path(path)
    label = label or str(path)
    if kind == "file" and path.is_dir():
        raise UserError(f"{label}: that is a folder; give a file path (e.g. {path / 'out'}{_suffix_hint(label)}).")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UserError(f"{label}: that is a file; give a folder path (a new or an existing folder).")
    where = path if path.is_dir() else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise UserError(f"{label}: cannot write there, {where} is a file, not a folder. Choose another output path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-write-check.", dir=where)
    except OSError as e:
        raise UserError(f"{label}: cannot write in {where} ({e.strerror or e}). Choose an output folder you can "
                        f"write to.") from None
    os.close(fd)
    os.unlink(probe)


def check_replaceable(path: str | os.PathLike, marker: str, what: str, label: str | None = None) -> None:
    """Raise a one-line :class:`~hdvila.errors.UserError` unless the folder ``path``, which a command
    is about to replace as a whole, may go: it does not exist, is empty, or holds ``marker`` (an
    earlier ``what`` written there). A file there, or a folder of anything else, is never deleted."""
    from hdvila.errors import UserError

    path = Path(path)
    label = label or str(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise UserError(f"{label}: that is a file; give a new folder for the {what} (nothing was changed).")
    if any(path.iterdir()) and not (path / marker).is_file():
        raise UserError(f"{label}: that folder holds other files and is not an earlier {what}, which would be "
                        f"replaced as a whole; give a new or empty folder (nothing was changed).")


def _suffix_hint(label: str) -> str:
    return ".json" if "json" in label else ".png" if "figure" in label else ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, merge: bool = False, last: tuple[str, ...] = ("config.json",)
               ) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success its contents become ``path``.

    - ``merge=False`` (a checkpoint, an exported folder): ``path`` is replaced as a whole. A folder
      already there is first renamed aside and deleted only after the new one is in place, so at
      every moment either the old or the new complete folder exists under some name.
    - ``merge=True`` (a model saved into a folder that holds other things, e.g. a ``discriminator/``
      subfolder): each top-level entry is moved in with ``os.replace``, names in ``last`` last, so a
      folder with a ``config.json`` always has its matching weights. Other entries of ``path`` stay.

    On error the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    try:
        yield tmp
        mode = 0o777 & ~_umask()
        os.chmod(tmp, mode)  # mkdtemp creates 0700
        for entry in tmp.rglob("*"):
            if entry.is_file():
                os.chmod(entry, 0o666 & ~_umask())  # mkstemp, safetensors and torch.save create private files
        if merge:
            path.mkdir(parents=True, exist_ok=True)
            for name in sorted(os.listdir(tmp), key=lambda n: n in last):
                dest = path / name
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                os.replace(tmp / name, dest)
        else:
            old = None
            if path.exists():
                old = path.with_name(f".old-{path.name}.{os.getpid()}")
                if old.exists():
                    shutil.rmtree(old)
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
