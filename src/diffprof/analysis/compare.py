"""Compare two runs cell by cell: is B slower than A, and is the difference real?

Cells are matched on (suite, labels): the swept axis values name a cell, so a run of the same
sweep on another commit or machine lines up even when its other settings differ (those differences
are reported per cell in ``settings_changes``, and environment differences in
``Comparison.environment_changes``, so an unlike-for-unlike comparison is visible). Cells present
in only one run are listed in ``only_a`` / ``only_b``.

Per matched cell the verdict needs two things:

1. **Size**: the metric moved the worse way by more than ``threshold`` (5%: below that, GPU clock
   and thermal drift make differences meaningless even when a test calls them significant). The
   threshold is symmetric in log space: 1.05x slower is a regression, 1/1.05x is an improvement,
   and for higher-is-better metrics (``images_per_s``) the ratio is inverted first (the metric's
   direction in :mod:`diffprof.metrics`).
2. **Significance**: a two-sided test on the raw per-repeat samples behind the metric (the
   registry's ``sample``, e.g. ``call_s``) rejects "same distribution" at level ``alpha``
   (:func:`~diffprof.analysis.significance.significance`: Mann-Whitney U, or Welch's t-test on
   log-times where the samples are too few for it). Cells without samples (single-valued metrics
   such as peak memory) are judged on size alone.

Verdicts: ``regression``, ``improvement``, ``same`` (within the threshold), ``not significant``
(beyond it, but noise could explain it), ``failed`` (failed in either run), ``missing`` (the
metric is absent on one side). :attr:`Comparison.has_regression` is true for any regression or any
cell that was ok in A and fails in B: what ``diffprof compare`` turns into exit code 1.

:func:`compare` needs only the two runs; :func:`diffprof.store.compare.compare_runs` loads them
from a store first.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from diffprof.analysis.significance import significance
from diffprof.environment import environment_changes
from diffprof.errors import ConfigError
from diffprof.metrics import Direction, direction_of, ordered, require
from diffprof.results import CellResult, RunInfo

Verdict = Literal["regression", "improvement", "same", "not significant", "failed", "missing"]


@dataclass
class CellComparison:
    """One matched cell: the metric in each run, the ratio, the test, the verdict."""

    suite: str
    labels: dict[str, Any]
    verdict: Verdict
    value_a: float | None
    value_b: float | None
    ratio: float | None
    p_value: float | None
    test: str
    median_a: float | None = None
    median_b: float | None = None
    n_a: int = 0
    n_b: int = 0
    cell_a: int | None = None
    cell_b: int | None = None
    settings_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    failed_in: Literal["A", "B", "both"] | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(default)"

    @property
    def change(self) -> float | None:
        """B relative to A, ``ratio - 1`` (+0.30 = the metric is 30% higher in B)."""
        return None if self.ratio is None else self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "labels": self.labels,
            "verdict": self.verdict,
            "value_a": self.value_a,
            "value_b": self.value_b,
            "ratio": self.ratio,
            "change": self.change,
            "p_value": self.p_value,
            "test": self.test,
            "median_a": self.median_a,
            "median_b": self.median_b,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "cell_a": self.cell_a,
            "cell_b": self.cell_b,
            "settings_changes": {k: list(v) for k, v in self.settings_changes.items()},
            "failed_in": self.failed_in,
            "note": self.note,
        }


@dataclass
class Comparison:
    """Run B against run A (the baseline), cell by cell."""

    run_a: int
    run_b: int
    metric: str
    sample: str | None
    direction: Direction
    threshold: float
    alpha: float
    cells: list[CellComparison]
    only_a: list[CellResult] = field(default_factory=list)
    only_b: list[CellResult] = field(default_factory=list)
    environment_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def _with(self, verdict: Verdict) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict == verdict]

    @property
    def regressions(self) -> list[CellComparison]:
        return self._with("regression")

    @property
    def improvements(self) -> list[CellComparison]:
        return self._with("improvement")

    @property
    def newly_failed(self) -> list[CellComparison]:
        """Cells that were ok in A and fail in B: the worst kind of regression."""
        return [c for c in self.cells if c.failed_in == "B"]

    @property
    def has_regression(self) -> bool:
        """True for any significant slowdown beyond the threshold or any newly failing cell."""
        return bool(self.regressions or self.newly_failed)

    @property
    def geomean_ratio(self) -> float | None:
        """Geometric mean of B/A over cells with a ratio: the run-level change in one number."""
        ratios = [c.ratio for c in self.cells if c.ratio is not None and c.ratio > 0 and math.isfinite(c.ratio)]
        return float(np.exp(np.mean(np.log(ratios)))) if ratios else None

    def summary(self) -> str:
        """``1 regression, 4 same; 1 cell only in B`` - one line for logs and table captions."""
        counts: dict[str, int] = defaultdict(int)
        for c in self.cells:
            counts[c.verdict] += 1
        order: list[Verdict] = ["regression", "improvement", "same", "not significant", "failed", "missing"]
        parts = [f"{counts[v]} {_plural(v, counts[v])}" for v in order if counts[v]]
        extra = [
            f"{len(cells)} {'cell' if len(cells) == 1 else 'cells'} only in {side}"
            for side, cells in (("A", self.only_a), ("B", self.only_b))
            if cells
        ]
        text = ", ".join(parts) or "no matched cells"
        return text + (f"; {', '.join(extra)}" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        def unmatched(cells: list[CellResult]) -> list[dict[str, Any]]:
            return [{"id": c.id, "suite": c.suite, "labels": c.labels, "status": c.status} for c in cells]

        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "metric": self.metric,
            "sample": self.sample,
            "direction": self.direction,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "has_regression": self.has_regression,
            "geomean_ratio": self.geomean_ratio,
            "summary": self.summary(),
            "cells": [c.to_dict() for c in self.cells],
            "only_a": unmatched(self.only_a),
            "only_b": unmatched(self.only_b),
            "environment_changes": {k: list(v) for k, v in self.environment_changes.items()},
        }


def _plural(verdict: str, n: int) -> str:
    return verdict + "s" if n != 1 and verdict in ("regression", "improvement") else verdict


def compare(
    run_a: RunInfo,
    run_b: RunInfo,
    threshold: float = 0.05,
    metric: str = "s_per_image",
    sample: str | None = None,
    alpha: float = 0.05,
    direction: Direction | None = None,
) -> Comparison:
    """Compare run ``run_b`` against the baseline ``run_a``, cell by cell.

    Args:
        run_a, run_b: the runs with their cells; A is the baseline.
        threshold (`float`, defaults to 0.05): smallest relative change that counts (5%).
        metric (`str`, defaults to ``"s_per_image"``): the metric judged.
        sample (`str`, *optional*): the raw sample series tested for significance; defaults to
            the one behind the metric in the registry (``call_s`` for ``s_per_image``), else a
            series named like the metric, else none (judged on size alone).
        alpha (`float`, defaults to 0.05): significance level of the test.
        direction (`"lower"` or `"higher"`, *optional*): which way is better; defaults to the
            metric's direction (:func:`diffprof.metrics.direction_of`).

    Raises:
        ConfigError: bad threshold/alpha, a metric neither registered nor in either run, or one
            that is in neither run while they hold others (the message lists those they hold).
    """
    if not threshold >= 0:
        raise ConfigError(f"threshold must be >= 0, got {threshold}", "0.05 means changes under 5% count as the same")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}", "0.05 is the usual significance level")
    cells = run_a.cells + run_b.cells
    available = {m for c in cells for m in c.metrics}
    described = require(metric, available)  # an unknown name: the error lists what the runs hold
    if available and metric not in available:
        raise ConfigError(f"neither run has the metric {metric!r}", f"they have: {', '.join(ordered(available))}")
    direction = direction or direction_of(metric)
    if sample is None:
        sample = described.sample or (metric if any(metric in c.samples for c in cells) else None)

    pairs, only_a, only_b = match_cells(run_a.cells, run_b.cells)
    return Comparison(
        run_a=run_a.id,
        run_b=run_b.id,
        metric=metric,
        sample=sample,
        direction=direction,
        threshold=threshold,
        alpha=alpha,
        cells=[_compare_cell(a, b, metric, sample, direction, threshold, alpha) for a, b in pairs],
        only_a=only_a,
        only_b=only_b,
        environment_changes=environment_changes(run_a.environment, run_b.environment),
    )


def match_cells(
    cells_a: list[CellResult], cells_b: list[CellResult]
) -> tuple[list[tuple[CellResult, CellResult]], list[CellResult], list[CellResult]]:
    """Pair cells with equal (suite, labels); return the pairs and the unmatched of each side.

    Should one run hold several cells with the same suite and labels (settings differing outside
    the labels), they pair up in stored order.
    """
    by_key: dict[str, list[CellResult]] = defaultdict(list)
    for cell in cells_b:
        by_key[_match_key(cell)].append(cell)
    pairs: list[tuple[CellResult, CellResult]] = []
    only_a: list[CellResult] = []
    for cell in cells_a:
        candidates = by_key.get(_match_key(cell))
        if candidates:
            pairs.append((cell, candidates.pop(0)))
        else:
            only_a.append(cell)
    matched_b = {id(b) for _, b in pairs}
    only_b = [c for c in cells_b if id(c) not in matched_b]
    return pairs, only_a, only_b


def _match_key(cell: CellResult) -> str:
    return json.dumps([cell.suite, cell.labels], sort_keys=True, default=str)


def _compare_cell(
    a: CellResult, b: CellResult, metric: str, sample: str | None, direction: Direction, threshold: float, alpha: float
) -> CellComparison:
    """The verdict for one matched pair (phases: values, samples and test, size, significance)."""
    # 1. The metric on each side (None where a cell lacks it).
    value_a, value_b = _value(a, metric), _value(b, metric)
    base = CellComparison(
        suite=a.suite,
        labels=a.labels,
        verdict="same",
        value_a=value_a,
        value_b=value_b,
        ratio=None,
        p_value=None,
        test="none",
        cell_a=a.id,
        cell_b=b.id,
        settings_changes=_settings_changes(a.settings, b.settings),
    )
    if not (a.ok and b.ok):
        base.verdict = "failed"
        base.failed_in = "B" if a.ok else "A" if b.ok else "both"
        failed = b if a.ok else a
        base.note = "failed in both runs" if base.failed_in == "both" else f"failed in {base.failed_in}: {_first_line(failed.error)}"
        return base
    if value_a is None or value_b is None:
        base.verdict = "missing"
        base.note = f"{metric} missing in {'A' if value_a is None else 'B'}"
        return base

    # 2. Samples and the significance test.
    samples_a = a.samples.get(sample, []) if sample else []
    samples_b = b.samples.get(sample, []) if sample else []
    base.n_a, base.n_b = len(samples_a), len(samples_b)
    if samples_a:
        base.median_a = float(np.median(samples_a))
    if samples_b:
        base.median_b = float(np.median(samples_b))
    base.p_value, base.test = significance(samples_a, samples_b, alpha)

    # 3. Size of the change, as "how much worse" whichever way is better.
    if value_a == 0:
        base.ratio = 1.0 if value_b == 0 else math.inf
    else:
        base.ratio = value_b / value_a
    worse = base.ratio if direction == "lower" else (1.0 / base.ratio if base.ratio else math.inf)
    if worse > 1.0 + threshold:
        verdict: Verdict = "regression"
    elif worse < 1.0 / (1.0 + threshold):
        verdict = "improvement"
    else:
        base.verdict = "same"
        return base

    # 4. Beyond the threshold: does the test back it? (No samples: size alone decides.)
    if base.p_value is not None and base.p_value >= alpha:
        base.verdict = "not significant"
        base.note = f"p={base.p_value:.2g} >= {alpha}: more repeats would tell"
    else:
        base.verdict = verdict
        if base.p_value is None:
            base.note = "no samples to test; judged on size alone"
    return base


def _value(cell: CellResult, metric: str) -> float | None:
    value = cell.metrics.get(metric)
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _settings_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no error message"
