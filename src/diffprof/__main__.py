"""``python -m diffprof``: the same as the ``diffprof`` command."""

from diffprof.cli import run

run()
