"""Where bundled assets live, and the one rule for "the bundled model, or the user's path".

``HDVILA_CHECKPOINTS`` overrides the bundled checkpoint folder.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def checkpoints_dir() -> Path:
    return Path(os.environ.get("HDVILA_CHECKPOINTS", REPO_ROOT / "checkpoints"))


def bundled(name: str) -> Path:
    """Path of a bundled model folder, e.g. ``bundled("judge")``."""
    return checkpoints_dir() / name


def resolve_model_path(path: str | os.PathLike | None, bundled_name: str, *, option: str = "--model",
                       accepts: str = "a model folder (config.json + model.safetensors)",
                       marker: str = "config.json") -> Path:
    """The user's ``path`` when one is given, else the bundled model folder ``bundled_name``.

    ``option`` names the command-line option that sets ``path`` and ``accepts`` says what it may
    point at; both go into the messages. A given path that does not exist, and a missing bundled
    model (no ``config.json`` in its folder), raise :class:`~hdvila.errors.CheckpointError` saying
    what to pass instead. Whether the path holds a valid model is left to the loader. ``marker`` is
    the file that makes a bundled folder complete (``pipeline_index.json`` for a pipeline).
    """
    from hdvila.errors import CheckpointError

    if path is not None and str(path) != "":
        p = Path(path).expanduser()
        if not p.exists():
            raise CheckpointError(f"{option} {path}: not found. Pass {accepts}.")
        return p
    p = bundled(bundled_name)
    if not (p / marker).is_file():
        raise CheckpointError(f"No {option} given and the bundled model {p} is missing. Pass {option} with "
                              f"{accepts}, or put the bundled {bundled_name} folder back (set HDVILA_CHECKPOINTS "
                              f"if your checkpoints live elsewhere).")
    return p
