"""The ``hdvila`` command: one console entry point with subcommands.

Each subcommand is one module of :mod:`apps.commands` exposing ``add_arguments(parser)`` and
``run(args)``; it parses the options and calls library functions of ``hdvila`` / ``generation``.
A module that writes files names the options that hold output paths in ``OUTPUTS`` (argparse
``dest`` names; ``-`` means stdout): each is checked writable, and to be a file or a folder as
:data:`OUTPUT_KINDS` says, before ``run``, so an output that cannot be written fails in one line before
any work.
Modules are imported only when their subcommand runs, so ``hdvila --help`` is instant.
A :class:`~hdvila.errors.UserError` is printed as one line (``error: ...``) with exit
status 2, never as a traceback; a ``UserWarning`` as one line (``warning: ...``), without Python's
source line (:func:`one_line_warnings`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("apps.commands.demo_data", "render demo-domain videos, images and annotations to files"),
    "judge": ("apps.commands.judge", "read shape, colour, background, size and pattern off images"),
    "convert": ("apps.commands.convert",
                "convert official checkpoints (HD-VILA .pt, StyleGAN2 .pkl/.pt) to model folders"),
    "export": ("apps.commands.export", "export a StyleGAN2 training checkpoint as a generator model folder"),
    "eval-retrieval": ("apps.commands.eval_retrieval", "text-video retrieval metrics on an annotated video set"),
    "search": ("apps.commands.search", "text-to-video search over a folder of videos"),
    "invert": ("apps.commands.invert", "project an image into a StyleGAN2 generator's W or W+ space"),
    "upscale": ("apps.commands.upscale", "text-conditioned x4 super-resolution of an image, a folder or a video"),
    "edit": ("apps.commands.edit", "text-guided editing of an image, a folder or a video (mapper or optimisation)"),
    "assemble-edit": ("apps.commands.assemble_edit", "an EditPipeline folder from a trained encoder and mapper"),
    "eval-edit": ("apps.commands.eval_edit", "measure an edit pipeline: judge success and preservation per attribute"),
    "score-mapper": ("apps.commands.score_mapper",
                     "the guide's validation numbers of trained edit mappers (train_mapper.py's, no training)"),
    "fd": ("apps.commands.fd", "FD-HDVILA of StyleGAN2 generators against demo-domain renders (lower is better)"),
    "eval-judge": ("apps.commands.eval_judge", "the attribute judge's accuracy on fresh demo-domain renders"),
    "eval-sr": ("apps.commands.eval_sr", "measure a super-resolution model: PSNR/SSIM, judge accuracy, text score"),
    "eval-guide": ("apps.commands.eval_guide",
                   "zero-shot reading of each attribute of still renders by an HD-VILA model"),
    "app": ("apps.commands.app", "the web UI (edit, upscale, video, search) on http://127.0.0.1:7860 by default"),
}


# What each output option (its ``dest``, as the command modules name them in ``OUTPUTS``) must be: a file
# path (an existing folder there is refused before any work) or a folder (an existing file is refused);
# the rest (``output`` of edit and upscale: a file for a file, a folder for a folder) may be either.
OUTPUT_KINDS = {"json": "file", "figure": "file", "out_dir": "folder", "cache_dir": "folder", "figures": "folder",
                "out": "folder"}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hdvila", description="HD-VILA video-language model, text-guided editing and super-resolution.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


@contextlib.contextmanager
def one_line_warnings():
    """Within the block, a :class:`UserWarning` (e.g. the images ``--skip-bad-images`` left out) is printed
    as one ``warning: ...`` line on stderr, its lines joined with "; ", without Python's source line."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, UserWarning):
                return shown(message, category, filename, lineno, file, line)
            text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip()).replace(":; ", ": ")
            print(f"warning: {text}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        yield


def check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace, outputs: tuple[str, ...]) -> None:
    """A one-line :class:`~hdvila.errors.UserError` for the first output path in ``args`` (the ``dest``
    names ``outputs``) that cannot be written, named as the user typed it (``--json``, ``OUTPUT``)."""
    from hdvila.atomic import check_writable

    names = {a.dest: (a.option_strings[-1] if a.option_strings else a.dest.upper()) for a in parser._actions}
    for dest in outputs:
        value = getattr(args, dest)
        if value and value != "-":
            check_writable(value, f"{names[dest]} {value}", OUTPUT_KINDS.get(dest))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # prints help or "invalid choice" and exits
        return 0
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"hdvila {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from hdvila.errors import UserError

    try:
        check_outputs(parser, args, getattr(module, "OUTPUTS", ()))
        with one_line_warnings():
            result = module.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
