"""User-facing applications: the `hdvila` command line and the web UI."""
