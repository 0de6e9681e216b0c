"""User-facing applications: the `hdvila` command line (`cli.py`, one module per subcommand in
`commands/`) and batch processing of image and video folders (`batch.py`)."""
