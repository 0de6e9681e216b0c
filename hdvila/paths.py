"""Where bundled assets live. ``HDVILA_CHECKPOINTS`` overrides the bundled checkpoint folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def checkpoints_dir() -> Path:
    return Path(os.environ.get("HDVILA_CHECKPOINTS", REPO_ROOT / "checkpoints"))


def bundled(name: str) -> Path:
    """Path of a bundled model folder, e.g. ``bundled("judge")``."""
    return checkpoints_dir() / name
