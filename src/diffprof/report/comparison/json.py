"""JSON: the whole comparison (:meth:`Comparison.to_dict`) under a format marker and version.

Strict JSON: non-finite floats are written as ``"NaN"``/``"Infinity"`` (as the run report does).
Keys: ``format``, ``version``, then run ids and names, the metric and its direction, threshold,
alpha, correction, ``has_regression``, ``summary``, ``warnings``, ``cells`` (each with verdict,
values, change, interval ``low``/``high``, p-values, evidence, rounds needed, note), ``only_a``,
``only_b``, ``environment_changes``, ``machine`` and ``machine_changes``.
"""

from __future__ import annotations

import json

from diffprof.analysis.compare import Comparison
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register
from diffprof.report.json import _strict

FORMAT = "diffprof-comparison"
VERSION = 1


def comparison_to_dict(comparison: Comparison) -> dict[str, object]:
    return {"format": FORMAT, "version": VERSION, **comparison.to_dict()}


@register
class JsonComparisonRenderer(ComparisonRenderer):
    name = "json"
    file_extension = "json"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        return json.dumps(_strict(comparison_to_dict(comparison)), indent=1, default=str, allow_nan=False)
