"""Pareto fronts: the settings nothing else beats on both axes.

A setting is worth considering only if no other one is at least as fast *and* at least as good,
and strictly better on one of the two. The first axis is always lower-is-better (time); which way
the second points is the metric's direction in the registry (adherence, PSNR, SSIM and CLIP
score: higher; latent error and memory: lower). ``tune`` picks from the front, the report draws
the time/quality and time/memory fronts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from diffprof.metrics import Direction, direction_of, quality_metrics
from diffprof.results import CellResult


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def pareto_front(times: Sequence[float], qualities: Sequence[float], direction: Direction = "higher") -> list[int]:
    """Indices of the points on the front, fastest first.

    Lower time is better; the second coordinate is better in ``direction``. A point is on the
    front when no other point is at least as good on both axes and strictly better on one;
    identical points are all kept. Points with a NaN coordinate are never on it (infinite PSNR,
    an exact match, is a value and counts). One sort plus one sweep: O(n log n).
    """
    if len(times) != len(qualities):
        raise ValueError(f"{len(times)} times but {len(qualities)} qualities")
    sign = 1.0 if direction == "higher" else -1.0
    points = [(float(t), sign * float(q), i) for i, (t, q) in enumerate(zip(times, qualities)) if _finite(t) and _finite(q)]
    # Fastest first; among equal times the best quality first.
    points.sort(key=lambda p: (p[0], -p[1]))
    front: list[int] = []
    best = -math.inf  # best (signed) quality of any strictly faster point
    i = 0
    while i < len(points):
        j = i
        while j < len(points) and points[j][0] == points[i][0]:
            j += 1
        top = points[i][1]  # the best quality at this time
        if top > best:
            front += [idx for _, q, idx in points[i:j] if q == top]
            best = top
        i = j
    return front


@dataclass(frozen=True)
class TradeoffPoint:
    """One cell placed on the time/quality plane."""

    cell: CellResult
    seconds_per_image: float
    quality: float


def tradeoff_points(cells: Sequence[CellResult], metric: str) -> list[TradeoffPoint]:
    """The successful cells that have both a time per image and ``metric``, as points."""
    out = []
    for cell in cells:
        t, q = cell.metrics.get("s_per_image"), cell.metrics.get(metric)
        if cell.ok and _finite(t) and _finite(q) and t > 0:  # type: ignore[operator]
            out.append(TradeoffPoint(cell, float(t), float(q)))  # type: ignore[arg-type]
    return out


def front_cells(cells: Sequence[CellResult], metric: str) -> list[TradeoffPoint]:
    """The Pareto-optimal cells for time against ``metric``, fastest first."""
    points = tradeoff_points(cells, metric)
    idx = pareto_front([p.seconds_per_image for p in points], [p.quality for p in points], direction_of(metric))
    return [points[i] for i in idx]


def quality_metric_of(cells: Sequence[CellResult]) -> str | None:
    """The first quality metric (in the registry's order of preference) some successful cell measured."""
    for metric in quality_metrics():
        if any(c.ok and _finite(c.metrics.get(metric)) for c in cells):
            return metric
    return None
