"""Comparison renderers: ``diffprof compare A B --format NAME`` writes a verdict in a CI system's
own format. The contract mirrors the run reports' (:mod:`.base`): a name, a file extension and
``render(comparison, options) -> str``; a format is one module with one class decorated with
:func:`register_comparison`. Renderers only read an :class:`~diffprof.analysis.compare.Comparison`
(the verdicts are decided there, never here), so every format gives the same verdicts.

Formats: ``junit`` (JUnit XML: a test case per cell, a regression is a failure; CI systems show it
as test results), ``github`` (markdown for a GitHub Actions job summary). The console table is the
CLI's default (:func:`diffprof.report.console_tables.comparison_table`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from diffprof.analysis.compare import CellComparison, Comparison
from diffprof.errors import unknown_choice
from diffprof.report.format import format_metric


@dataclass(frozen=True)
class ComparisonOptions:
    """How the two runs are named in the output (a CI page names them by branch or commit).

    Args:
        label_a (`str`, *optional*): the baseline, default ``run <id>``.
        label_b (`str`, *optional*): the candidate, default ``run <id>``.
    """

    label_a: str | None = None
    label_b: str | None = None

    def labels(self, comparison: Comparison) -> tuple[str, str]:
        return self.label_a or f"run {comparison.run_a}", self.label_b or f"run {comparison.run_b}"


class ComparisonRenderer:
    """One comparison format; subclasses set :attr:`name` and :attr:`file_extension`."""

    name: ClassVar[str]
    file_extension: ClassVar[str]

    def render(self, comparison: Comparison, options: ComparisonOptions | None = None) -> str:  # pragma: no cover
        raise NotImplementedError


#: Comparison formats by name; filled by :func:`register_comparison` when the modules are imported.
COMPARISON_RENDERERS: dict[str, type[ComparisonRenderer]] = {}


def register_comparison(cls: type[ComparisonRenderer]) -> type[ComparisonRenderer]:
    COMPARISON_RENDERERS[cls.name] = cls
    return cls


def get_comparison_renderer(name: str) -> ComparisonRenderer:
    """The comparison renderer called ``name``; an unknown name raises an error listing them."""
    from diffprof.report import github, junit  # noqa: F401  (register the formats)

    if name not in COMPARISON_RENDERERS:
        raise unknown_choice("compare format", name, ["console", *COMPARISON_RENDERERS])
    return COMPARISON_RENDERERS[name]()


# ----------------------------------------------------------------- what every format says alike
def change_text(cell: CellComparison) -> str:
    """``+30.0%``; ``-`` where there is no finite ratio."""
    return "-" if cell.change is None or not math.isfinite(cell.change) else f"{100 * cell.change:+.1f}%"


def verdict_reason(comparison: Comparison, cell: CellComparison) -> str:
    """One sentence with the numbers behind a cell's verdict, e.g. ``s_per_image 1.00 s -> 1.30 s
    (+30.0%, beyond the 5% threshold; p=0.0079 < 0.05, mann-whitney, 5/5 samples)``."""
    c = comparison
    if cell.verdict in ("failed", "missing"):
        return cell.note
    values = f"{c.metric} {format_metric(c.metric, cell.value_a)} -> {format_metric(c.metric, cell.value_b)}"
    size = {"same": "within", "not significant": "beyond"}.get(cell.verdict, "beyond")
    parts = [f"{change_text(cell)}, {size} the {100 * c.threshold:g}% threshold"]
    if cell.p_value is not None:
        sign = "<" if cell.p_value < c.alpha else ">="
        parts.append(f"p={cell.p_value:.2g} {sign} {c.alpha:g}, {cell.test}, {cell.n_a}/{cell.n_b} samples")
    elif cell.verdict in ("regression", "improvement"):
        parts.append("no samples to test: judged on size alone")
    return f"{values} ({'; '.join(parts)})"
