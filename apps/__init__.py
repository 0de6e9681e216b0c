"""User-facing applications: the `hdvila` command line (`cli.py`, one module per subcommand in
`commands/`), the web UI (`web.py`), batch processing of image and video folders (`batch.py`) and
the edit and super-resolution pipelines as they use them: loaded with replacements, run over videos
(`pipelines.py`)."""
