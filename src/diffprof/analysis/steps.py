"""Change points in a metric's history: where a series of run values steps up or down, and by how much.

As asv's ``step_detect`` does for its commit history: fit the series with a piecewise constant
function by minimizing (absolute error + a penalty per segment), the L1 Potts problem, solved
exactly by dynamic programming over segment ends; then keep only the steps larger than a relative
``threshold``. The fit works on log-values (a step is a ratio) around each segment's median, so
one spiked run costs the same inside a segment as in one of its own and is never a step; the
penalty is ``penalty * sigma * log(n)`` per extra segment, ``sigma`` the series' noise estimated
robustly from successive differences (so a step does not inflate it). A segment has at least
``min_size`` runs (asv uses 2 as well), so a step at the last run is reported once one more run
confirms it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Penalty per extra segment, in units of sigma * log(n) (higher finds fewer steps).
PENALTY = 2.0


@dataclass(frozen=True)
class Segment:
    """Points ``start`` to ``end`` (exclusive) of the series, at ``value`` (their median)."""

    start: int
    end: int
    value: float


@dataclass(frozen=True)
class Step:
    """Between points ``at - 1`` and ``at`` the level went from ``before`` to ``after``."""

    at: int
    before: float
    after: float

    @property
    def ratio(self) -> float:
        return self.after / self.before

    @property
    def change(self) -> float:
        return self.ratio - 1.0


def noise_sigma(logs: np.ndarray) -> float:
    """Robust standard deviation of the points around their level: MAD of successive differences
    / sqrt(2) (a step moves one difference, not the median of them)."""
    if logs.size < 3:
        return 0.0
    diffs = np.diff(logs)
    return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2))


def _l1_costs(y: np.ndarray) -> list[list[float]]:
    """``cost[i][j - i - 1]``: absolute deviation of ``y[i:j]`` from its median, for every segment."""
    costs: list[list[float]] = []
    for i in range(y.size):
        window: list[float] = []
        row = []
        for j in range(i, y.size):
            bisect.insort(window, float(y[j]))
            k = len(window)
            row.append(sum(window[(k + 1) // 2:]) - sum(window[: k // 2]))
        costs.append(row)
    return costs


def segments(values: Sequence[float], *, min_size: int = 2, penalty: float = PENALTY, floor: float = 0.005) -> list[Segment]:
    """The optimal piecewise constant fit of positive ``values`` (in order) under the penalty.

    ``floor``: the smallest relative noise assumed (0.5%), so a series of near-identical values
    does not turn every wobble into a step. A segment's value is its median.
    """
    y = np.log(np.asarray(values, dtype=np.float64))
    n = y.size
    if n == 0:
        return []
    sigma = max(noise_sigma(y), math.log1p(floor))
    beta = penalty * sigma * math.log(max(n, 2))
    cost = _l1_costs(y)
    size = max(1, min_size)
    best = [math.inf] * (n + 1)
    last = [0] * (n + 1)
    best[0] = -beta
    for j in range(1, n + 1):
        starts = [0] + [i for i in range(size, j - size + 1)]
        for i in starts:
            c = best[i] + beta + cost[i][j - i - 1]
            if c < best[j]:
                best[j], last[j] = c, i
    out: list[Segment] = []
    j = n
    while j > 0:
        i = last[j]
        out.append(Segment(i, j, float(math.exp(np.median(y[i:j])))))
        j = i
    return out[::-1]


def detect_steps(values: Sequence[float], threshold: float = 0.05, *, min_size: int = 2, penalty: float = PENALTY) -> list[Step]:
    """Steps between consecutive segments of :func:`segments` whose relative size exceeds ``threshold``.

    Adjacent segments closer than the threshold are merged first, so a slow drift split into
    small steps is not reported, nor does it hide a real step beside it.
    """
    parts = segments(values, min_size=min_size, penalty=penalty)
    merged: list[Segment] = []
    logs = np.log(np.asarray(values, dtype=np.float64))
    band = math.log1p(threshold)
    for seg in parts:
        if merged and abs(math.log(seg.value) - math.log(merged[-1].value)) <= band:
            prev = merged.pop()
            seg = Segment(prev.start, seg.end, float(math.exp(np.median(logs[prev.start:seg.end]))))
        merged.append(seg)
    return [Step(b.start, a.value, b.value) for a, b in zip(merged, merged[1:])]
