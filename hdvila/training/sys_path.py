"""``sys.path`` for a training script run as a file (``python generation/train_sr.py``, ``accelerate
launch hdvila/train.py``): Python then puts the script's own folder first on ``sys.path``, so its
sibling files would shadow modules of the same name (``hdvila/imageio.py`` the ``imageio`` package)
and the repository's packages would not be importable unless installed.

:func:`put_package_first` fixes that before the script imports anything else. The package is not
importable at that point, so each script runs this file (standard library only) by its path, in a
guard under its ``from pathlib import Path``::

    if __name__ == "__main__" and not __package__:  # run as a script: ...
        from runpy import run_path  # ...

        run_path(str(Path(__file__).resolve().parents[1] / "hdvila/training/sys_path.py")
                 )["put_package_first"](__file__)

Run as a module (``python -m generation.train_sr``) or imported, a script skips this.
"""

from __future__ import annotations


def put_package_first(script: str) -> None:
    """For a script one folder below the repository root (``hdvila/train.py``,
    ``generation/train_*.py``): drop the script's folder from ``sys.path`` and put the repository
    root first, so ``import hdvila`` / ``import generation`` find the packages and no sibling file
    is imported as a top-level module."""
    import sys  # imported here: the function outlives the namespace that runpy ran this file in
    from pathlib import Path

    here = Path(script).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
