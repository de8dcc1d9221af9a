"""Comparison reports: every format renders a :class:`~diffprof.analysis.compare.Comparison` through one contract.

``get_comparison_renderer("html").render(comparison)`` returns the report; the formats are console,
markdown, json and html (see :data:`COMPARISON_RENDERERS`). A new format (``junit``, ``github``) is
one module with one :class:`ComparisonRenderer` subclass decorated with :func:`register`, imported
below; the rows every format shows come from :func:`~diffprof.report.comparison.rows.comparison_rows`.
"""

from diffprof.report.comparison import console, html, json, markdown  # noqa: F401  (register the formats)
from diffprof.report.comparison.base import COMPARISON_RENDERERS, CompareOptions, ComparisonRenderer, get_comparison_renderer, register

__all__ = ["COMPARISON_RENDERERS", "CompareOptions", "ComparisonRenderer", "get_comparison_renderer", "register"]
