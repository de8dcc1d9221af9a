"""Benchmark reports: every format renders a :class:`~diffprof.results.RunInfo` through one contract.

``get_renderer("html").render(run, ReportOptions())`` returns the report; the formats are
console, markdown, csv, json and html (see :data:`RENDERERS`). :func:`run_frame` gives the same
numbers as a pandas DataFrame and :func:`load_run` reads a json report back.
"""

from diffprof.report import console, csv, html, json, markdown  # noqa: F401  (register the formats)
from diffprof.report.base import RENDERERS, Renderer, ReportOptions, get_renderer, register
from diffprof.report.frame import run_frame
from diffprof.report.json import load_run, run_from_dict, run_to_dict

__all__ = [
    "RENDERERS",
    "Renderer",
    "ReportOptions",
    "get_renderer",
    "load_run",
    "register",
    "run_frame",
    "run_from_dict",
    "run_to_dict",
]
