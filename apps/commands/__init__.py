"""One module per ``hdvila`` subcommand, each with ``add_arguments(parser)`` and ``run(args)``.

A command parses its options, calls library functions of :mod:`hdvila` / :mod:`generation` (and
:mod:`apps.pipelines`, :mod:`apps.batch`) with Python arguments, and prints; the libraries know
nothing of argparse or of this package.
"""
