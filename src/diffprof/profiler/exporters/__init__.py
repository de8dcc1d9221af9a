"""Output formats for a :class:`~diffprof.profiler.record.Profile`: json, csv, chrome, console."""

from diffprof.profiler.exporters import chrome, console, csv, json  # noqa: F401  (register)
from diffprof.profiler.exporters.base import EXPORTERS, Exporter, get_exporter

__all__ = ["EXPORTERS", "Exporter", "get_exporter"]
