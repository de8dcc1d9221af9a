"""Comparison reports: every format renders a :class:`~diffprof.analysis.compare.Comparison` through one contract.

``get_comparison_renderer("html").render(comparison)`` returns the report; the formats are console,
markdown, json, html, junit (JUnit XML for CI test reports) and github (a GitHub Actions job
summary; see :data:`COMPARISON_RENDERERS`). A new format is one module with one
:class:`ComparisonRenderer` subclass decorated with :func:`register`, imported below; the rows every format shows come from :func:`~diffprof.report.comparison.rows.comparison_rows`.
"""

from diffprof.report.comparison import console, github, html, json, junit, markdown  # noqa: F401  (register the formats)
from diffprof.report.comparison.base import COMPARISON_RENDERERS, CompareOptions, ComparisonRenderer, get_comparison_renderer, register

__all__ = ["COMPARISON_RENDERERS", "CompareOptions", "ComparisonRenderer", "get_comparison_renderer", "register"]
