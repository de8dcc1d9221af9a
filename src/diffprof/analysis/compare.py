"""Compare two runs cell by cell: is B slower than A, and is the difference believed?

Cells are matched on (suite, labels): the swept axis values name a cell, so a run of the same
sweep on another commit or machine lines up even when its other settings differ (those differences
are reported per cell in ``settings_changes``, environment differences in
``Comparison.environment_changes`` and machine-state differences in ``machine_changes``, so an
unlike-for-unlike comparison is visible). Cells in only one run are listed in ``only_a`` / ``only_b``.

Per matched cell (the statistics are :mod:`diffprof.analysis.verdicts`):

1. **Values**: the metric's per-round values on each side (per-call samples for cells stored
   without rounds; :func:`~diffprof.analysis.evidence.cell_values`), and the noise floor of the
   cell's earlier runs when ``history`` holds three or more (same requested cell, rounds and
   environment; :func:`~diffprof.analysis.evidence.history_floor`).
2. **Change**: the ratio of geometric means B/A with a Welch test on log-values and its interval.
3. **Correction**: the p-values of every tested cell are corrected for their number
   (Benjamini-Hochberg by default, Holm on request), so six cells at alpha 0.05 do not give six
   chances at a false alarm.
4. **Verdict** (:func:`~diffprof.analysis.verdicts.judge`): ``regression`` / ``improvement`` beyond
   the threshold (5%, symmetric in log space; the metric's direction from the registry) and
   significant after correction; ``same``; ``too noisy`` when the cell's noise is wider than the
   threshold (with the rounds that would resolve it); ``not significant``; ``host busy`` when a
   believed change was measured while either run's host was busy (others took CPU the run needed,
   :mod:`diffprof.analysis.machine`); ``failed``; ``missing``.

:attr:`Comparison.has_regression` is true for a believed regression or a cell that was ok in A and
fails in B: what ``diffprof compare`` turns into exit code 1. :func:`compare` needs only the runs;
:func:`diffprof.store.compare.compare_runs` loads them, and the history, from a store.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from diffprof.analysis.evidence import Evidence, cell_values, history_floor, match_cells, speed_for
from diffprof.analysis.machine import HostLoad, host_load, machine_changes, machine_warnings
from diffprof.analysis.verdicts import CORRECTIONS, Change, Correction, Prior, Verdict, adjust, estimate_change, judge, pooled_prior, run_value
from diffprof.environment import environment_changes
from diffprof.errors import ConfigError
from diffprof.metrics import Direction, direction_of, ordered, require
from diffprof.results import CellResult, RunInfo

__all__ = ["CellComparison", "Comparison", "Verdict", "compare", "match_cells"]

#: Verdicts in the order summaries and tables list them.
VERDICTS: tuple[Verdict, ...] = ("regression", "improvement", "same", "not significant", "too noisy", "host busy", "failed", "missing")


@dataclass
class CellComparison:
    """One matched cell: the metric in each run, the change and its interval, the test, the verdict.

    ``value_a``/``value_b`` are the cells' stored metric values; ``values_a``/``values_b`` the values
    weighed (per round, or per call), ``mean_a``/``mean_b`` their geometric means, whose ratio is
    ``ratio`` and is what the test, the interval and the verdict are about.
    """

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
    mean_a: float | None = None
    mean_b: float | None = None
    n_a: int = 0
    n_b: int = 0
    cell_a: int | None = None
    cell_b: int | None = None
    settings_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    failed_in: Literal["A", "B", "both"] | None = None
    note: str = ""
    evidence: Evidence | None = None
    p_adjusted: float | None = None
    low: float | None = None
    high: float | None = None
    rounds_needed: int | None = None
    history_runs: int = 0
    values_a: list[float] = field(default_factory=list)
    values_b: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(default)"

    @property
    def change(self) -> float | None:
        """B relative to A, ``ratio - 1`` (+0.30 = the metric is 30% higher in B)."""
        return None if self.ratio is None else self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["settings_changes"] = {k: list(v) for k, v in self.settings_changes.items()}
        data["change"] = self.change
        return data


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
    correction: Correction = "bh"
    name_a: str | None = None
    name_b: str | None = None
    load_a: HostLoad = field(default_factory=lambda: HostLoad(recorded=False))
    load_b: HostLoad = field(default_factory=lambda: HostLoad(recorded=False))
    machine_a: dict[str, Any] = field(default_factory=dict)
    machine_b: dict[str, Any] = field(default_factory=dict)
    machine_changes: list[str] = field(default_factory=list)
    #: Whether times were divided by their rounds' speed probes, and the note that says how (or why not).
    speed_adjusted: bool = False
    speed_note: str = ""

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
        """True for any believed slowdown beyond the threshold or any newly failing cell."""
        return bool(self.regressions or self.newly_failed)

    @property
    def geomean_ratio(self) -> float | None:
        """Geometric mean of B/A over cells with a ratio: the run-level change in one number."""
        ratios = [c.ratio for c in self.cells if c.ratio is not None and c.ratio > 0 and math.isfinite(c.ratio)]
        return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None

    @property
    def warnings(self) -> list[str]:
        """What every rendering of this comparison must say: busy hosts, states and environments that differ."""
        out = [f"run {side} ({rid}): {w}" for side, rid, m in (("A", self.run_a, self.machine_a), ("B", self.run_b, self.machine_b)) for w in machine_warnings(m)]
        out += [f"machine state differs: {c}" for c in self.machine_changes]
        if self.speed_note and not self.speed_adjusted:  # said as a note, not a warning, when it worked
            out.append(self.speed_note)
        if self.environment_changes:
            out.append(f"environment differs in {len(self.environment_changes)} field{'s' * (len(self.environment_changes) != 1)}")
        if any(c.evidence == "calls" for c in self.cells):
            out.append("some cells were stored without rounds: their per-call samples share one stretch of time, so drift between runs is not in their test")
        return out

    def summary(self) -> str:
        """``1 regression, 4 same; 1 cell only in B`` - one line for logs and table captions."""
        counts: dict[str, int] = defaultdict(int)
        for c in self.cells:
            counts[c.verdict] += 1
        parts = [f"{counts[v]} {_plural(v, counts[v])}" for v in VERDICTS if counts[v]]
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

        def load(value: HostLoad) -> dict[str, Any]:
            return {k: getattr(value, k) for k in value.__dataclass_fields__} | {"reason": value.reason}

        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "name_a": self.name_a,
            "name_b": self.name_b,
            "metric": self.metric,
            "sample": self.sample,
            "direction": self.direction,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "correction": self.correction,
            "has_regression": self.has_regression,
            "geomean_ratio": self.geomean_ratio,
            "summary": self.summary(),
            "warnings": self.warnings,
            "cells": [c.to_dict() for c in self.cells],
            "only_a": unmatched(self.only_a),
            "only_b": unmatched(self.only_b),
            "environment_changes": {k: list(v) for k, v in self.environment_changes.items()},
            "machine": {"a": self.machine_a, "b": self.machine_b, "load_a": load(self.load_a), "load_b": load(self.load_b)},
            "machine_changes": self.machine_changes,
            "speed_adjusted": self.speed_adjusted,
            "speed_note": self.speed_note,
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
    *,
    correction: Correction = "bh",
    history: Sequence[RunInfo] = (),
    adjust_speed: bool = True,
) -> Comparison:
    """Compare run ``run_b`` against the baseline ``run_a``, cell by cell.

    Args:
        run_a, run_b: the runs with their cells; A is the baseline.
        threshold (`float`, defaults to 0.05): smallest relative change that counts (5%).
        metric (`str`, defaults to ``"s_per_image"``): the metric judged.
        sample (`str`, *optional*): the per-call series used for cells stored without rounds;
            defaults to the one behind the metric in the registry (``call_s`` for ``s_per_image``).
        alpha (`float`, defaults to 0.05): significance level, after correction.
        direction (`"lower"` or `"higher"`, *optional*): which way is better; defaults to the
            metric's direction (:func:`diffprof.metrics.direction_of`).
        correction (`"bh"`, `"holm"` or `"none"`): the multiple-comparison correction.
        history: earlier runs (with their cells) whose measurements of the same cells give the
            noise floor; A and B themselves are skipped if present (by uid, else by id).
        adjust_speed: divide each round's time by its speed probe when both runs hold probes and
            share an environment (:mod:`diffprof.analysis.evidence`).

    Raises:
        ConfigError: bad threshold/alpha/correction, a metric neither registered nor in either
            run, or one that is in neither run while they hold others (the message lists those).
    """
    if not threshold >= 0:
        raise ConfigError(f"threshold must be >= 0, got {threshold}", "0.05 means changes under 5% count as the same")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}", "0.05 is the usual significance level")
    if correction not in CORRECTIONS:
        raise ConfigError(f"unknown correction {correction!r}", f"choose one of: {', '.join(CORRECTIONS)} (bh = Benjamini-Hochberg)")
    cells = run_a.cells + run_b.cells
    available = {m for c in cells for m in c.metrics}
    described = require(metric, available)  # an unknown name: the error lists what the runs hold
    if available and metric not in available:
        raise ConfigError(f"neither run has the metric {metric!r}", f"they have: {', '.join(ordered(available))}")
    direction = direction or direction_of(metric)
    if sample is None:
        sample = described.sample or (metric if any(metric in c.samples for c in cells) else None)

    load_a, load_b = host_load(run_a.machine), host_load(run_b.machine)
    busy = " and ".join(f"run {s}'s host was busy ({load.reason})" for s, load in (("A", load_a), ("B", load_b)) if load.busy) or None
    pairs, only_a, only_b = match_cells(run_a.cells, run_b.cells)
    exclude = (run_a, run_b)  # never their own history, matched by uid (B may come from another store than the history)
    speed, speed_note = speed_for(run_a, run_b, pairs, metric) if adjust_speed else (None, "")
    rows = [_row(a, b, metric, sample, speed) for a, b in pairs]
    prior_a, prior_b = (_prior([r.values_a if r.evidence == "rounds" else [] for r in rows]), _prior([r.values_b if r.evidence == "rounds" else [] for r in rows]))
    changes = [_change(row, a, metric, sample, run_a, history, exclude, prior_a, prior_b, speed) for row, (a, _) in zip(rows, pairs)]
    adjusted = adjust([change.p_value if change is not None else None for change in changes], correction)
    judged = [_judge(row, change, p, threshold, alpha, direction, busy) for row, change, p in zip(rows, changes, adjusted)]
    return Comparison(
        run_a=run_a.id, run_b=run_b.id, metric=metric, sample=sample, direction=direction, threshold=threshold, alpha=alpha,
        cells=judged, only_a=only_a, only_b=only_b, environment_changes=environment_changes(run_a.environment, run_b.environment),
        correction=correction, name_a=run_a.name, name_b=run_b.name, load_a=load_a, load_b=load_b,
        machine_a=run_a.machine, machine_b=run_b.machine, machine_changes=machine_changes(run_a.machine, run_b.machine),
        speed_adjusted=speed is not None, speed_note=speed_note,
    )


def _row(a: CellResult, b: CellResult, metric: str, sample: str | None, speed: float | None = None) -> CellComparison:
    """One matched pair's row with the values it weighs (its verdict already set where a failed
    or missing side decides it)."""
    value_a, value_b = _value(a, metric), _value(b, metric)
    row = CellComparison(
        suite=a.suite, labels=a.labels, verdict="same", value_a=value_a, value_b=value_b, ratio=None, p_value=None, test="none",
        cell_a=a.id, cell_b=b.id, settings_changes=_settings_changes(a.settings, b.settings),
    )
    if not (a.ok and b.ok):
        row.verdict = "failed"
        row.failed_in = "B" if a.ok else "A" if b.ok else "both"
        failed = b if a.ok else a
        row.note = "failed in both runs" if row.failed_in == "both" else f"failed in {row.failed_in}: {_first_line(failed.error)}"
        return row
    if value_a is None or value_b is None:
        row.verdict = "missing"
        row.note = f"{metric} missing in {'A' if value_a is None else 'B'}"
        return row
    (values_a, kind_a), (values_b, kind_b) = cell_values(a, metric, sample, speed), cell_values(b, metric, sample, speed)
    row.values_a, row.values_b = values_a, values_b
    row.n_a, row.n_b = len(values_a), len(values_b)
    row.evidence = kind_a if kind_a == kind_b else "calls" if "calls" in (kind_a, kind_b) else "value"
    row.median_a, row.median_b = (statistics.median(v) if v else None for v in (values_a, values_b))
    row.mean_a, row.mean_b = run_value(values_a), run_value(values_b)
    return row


def _prior(series: list[list[float]]) -> Prior | None:
    """What one run's cells say together about their round-to-round variance (:func:`pooled_prior`)."""
    logs = [[math.log(v) for v in values if v > 0 and math.isfinite(v)] for values in series]
    return pooled_prior([statistics.variance(x) for x in logs if len(x) > 1], [len(x) - 1.0 for x in logs if len(x) > 1])


def _change(
    row: CellComparison, a: CellResult, metric: str, sample: str | None, run_a: RunInfo, history: Sequence[RunInfo],
    exclude: tuple[RunInfo, RunInfo], prior_a: Prior | None, prior_b: Prior | None, speed: float | None = None,
) -> Change | None:
    """The change of one row (None where a failed or missing side, or no positive value, decides it)."""
    if row.verdict in ("failed", "missing"):
        return None
    if row.mean_a is None or row.mean_b is None:  # no positive values: the plain ratio of the metric
        value_a, value_b = row.value_a or 0.0, row.value_b or 0.0
        row.ratio = (1.0 if value_b == 0 else math.inf) if value_a == 0 else value_b / value_a
        return None
    use_priors = row.evidence == "rounds"
    floor = history_floor(a, run_a, history, metric, sample, exclude, speed)
    change = estimate_change(row.values_a, row.values_b, floor, prior_a if use_priors else None, prior_b if use_priors else None)
    row.ratio, row.p_value = change.ratio, change.p_value
    row.history_runs = change.floor.runs if change.floor is not None else 0
    row.test = "none" if change.p_value is None else ("welch-log " + str(row.evidence) + (" + history floor" if change.floored else ""))
    return change


def _judge(
    row: CellComparison, change: Change | None, p_adjusted: float | None, threshold: float, alpha: float, direction: Direction, busy: str | None
) -> CellComparison:
    if change is None:
        if row.verdict == "same" and row.ratio is not None:  # values that are not positive: size alone
            worse = row.ratio if direction == "lower" else (1 / row.ratio if row.ratio else math.inf)
            row.verdict = "regression" if worse > 1 + threshold else "improvement" if worse < 1 / (1 + threshold) else "same"
            row.note = "judged on size alone"
        return row
    verdict = judge(change, threshold, alpha=alpha, p_adjusted=p_adjusted, direction=direction, busy=busy)
    row.verdict, row.rounds_needed, row.p_adjusted = verdict.verdict, verdict.rounds_needed, p_adjusted
    row.note = verdict.note
    if change.testable:
        row.low, row.high = change.interval(alpha)
    if row.evidence == "calls" and row.verdict not in ("same",):
        row.note = "; ".join(filter(None, [row.note, "per-call samples (no rounds stored)"]))
    return row


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
