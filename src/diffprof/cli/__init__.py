"""Command line: ``diffprof --help``."""

from diffprof.cli.app import app, main, run

__all__ = ["app", "main", "run"]
