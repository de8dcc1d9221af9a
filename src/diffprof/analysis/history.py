"""A metric of a cell (or of every cell of a suite) across runs, with its change points.

Cells are matched across runs on (suite, labels), as ``compare`` matches them. Each run gives one
value per cell: the geometric mean of its per-round values (per-call for cells stored without
rounds), with the interval of that mean; :func:`~diffprof.analysis.steps.detect_steps` marks where
the series steps by more than the threshold. Pure: the runs come in, the series go out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffprof.analysis.evidence import cell_values
from diffprof.analysis.steps import Step, detect_steps
from diffprof.analysis.verdicts import run_value
from diffprof.errors import ConfigError
from diffprof.metrics import direction_of, ordered, require
from diffprof.results import CellResult, RunInfo


@dataclass(frozen=True)
class Point:
    """One run's value of one cell: the run, the value and the spread of its rounds (a fraction)."""

    run_id: int
    name: str | None
    created_at: str
    value: float
    spread: float | None
    n: int


@dataclass
class CellHistory:
    """One cell's series across runs, oldest first, and the steps in it."""

    suite: str
    labels: dict[str, Any]
    points: list[Point]
    steps: list[Step] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(default)"

    def step_at(self, run_id: int) -> Step | None:
        """The step whose new level starts at run ``run_id``, if any."""
        for step in self.steps:
            if self.points[step.at].run_id == run_id:
                return step
        return None


@dataclass
class History:
    """Every matched cell's series for one metric, over the given runs (oldest first)."""

    metric: str
    direction: str
    threshold: float
    runs: list[RunInfo]
    cells: list[CellHistory]

    def regressions(self) -> list[tuple[CellHistory, Step]]:
        """Steps the worse way (up for lower-is-better metrics)."""
        worse = (lambda s: s.ratio > 1) if self.direction == "lower" else (lambda s: s.ratio < 1)
        return [(c, s) for c in self.cells for s in c.steps if worse(s)]


def _key(cell: CellResult) -> str:
    return json.dumps([cell.suite, cell.labels], sort_keys=True, default=str)


def _spread(values: Sequence[float]) -> float | None:
    logs = np.log([v for v in values if v > 0 and math.isfinite(v)])
    if logs.size < 2:
        return None
    return float(math.expm1(logs.std(ddof=1) / math.sqrt(logs.size)))


def history(
    runs: Sequence[RunInfo],
    metric: str = "s_per_image",
    *,
    suite: str | None = None,
    labels: dict[str, str] | None = None,
    threshold: float = 0.05,
    min_size: int = 2,
) -> History:
    """The series of ``metric`` across ``runs`` (in the order given) for every cell of ``suite``
    whose labels include ``labels`` (values compared as text); steps beyond ``threshold``.

    Raises:
        ConfigError: no run holds a matching cell with the metric (the message names the suites
            and metrics the runs hold).
    """
    available = {m for r in runs for c in r.cells for m in c.metrics}
    described = require(metric, available)
    sample = described.sample
    wanted = {k: str(v) for k, v in (labels or {}).items()}
    series: dict[str, CellHistory] = {}
    for run in runs:
        for cell in run.cells:
            if not cell.ok or (suite is not None and cell.suite != suite):
                continue
            if any(str(cell.labels.get(k)) != v for k, v in wanted.items()):
                continue
            values, _ = cell_values(cell, metric, sample)
            value = run_value(values)
            if value is None:
                continue
            entry = series.setdefault(_key(cell), CellHistory(cell.suite, cell.labels, []))
            if entry.points and entry.points[-1].run_id == run.id:
                continue  # a run holding the same cell twice: its first
            entry.points.append(Point(run.id, run.name, run.created_at, value, _spread(values), len(values)))
    if not series:
        suites = sorted({c.suite for r in runs for c in r.cells})
        what = f"suite {suite!r}" if suite else "any suite"
        raise ConfigError(
            f"no run among {len(runs)} holds a cell of {what} with {metric}" + (f" and labels {wanted}" if wanted else ""),
            f"the runs hold suites {', '.join(suites) or 'none'} and metrics {', '.join(ordered(available)) or 'none'}",
        )
    for entry in series.values():
        entry.steps = detect_steps([p.value for p in entry.points], threshold, min_size=min_size)
    return History(metric, direction_of(metric), threshold, list(runs), list(series.values()))
