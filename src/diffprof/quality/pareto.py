"""The Pareto front of time against quality: the settings nothing else beats on both.

A setting is worth considering only if no other one is at least as fast *and* at least as good,
and strictly better on one of the two. Which way "good" points depends on the metric (adherence,
PSNR, SSIM and CLIP score: higher; latent error: lower), taken from the one direction table in
:mod:`diffprof.store.compare`. ``tune`` picks from the front and the report draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from diffprof.results import CellResult

Direction = Literal["lower", "higher"]

#: Quality metrics a cell can carry (suites.measure), in the order plots and tune prefer them.
QUALITY_METRICS: tuple[str, ...] = ("adherence", "clip_score", "psnr_db", "ssim", "latent_rel_error")


def quality_direction(metric: str) -> Direction:
    """Which way ``metric`` is better (a :class:`~diffprof.errors.ConfigError` when it cannot be told)."""
    from diffprof.store.compare import direction_of

    return direction_of(metric)


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def pareto_front(times: Sequence[float], qualities: Sequence[float], direction: Direction = "higher") -> list[int]:
    """Indices of the points on the front, fastest first.

    Lower time is better; quality is better in ``direction``. A point is on the front when no
    other point is at least as good on both axes and strictly better on one; identical points
    are all kept. Points with a NaN coordinate are never on it (infinite PSNR, an exact match,
    is a value and counts). One sort plus one sweep: O(n log n).
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
    idx = pareto_front([p.seconds_per_image for p in points], [p.quality for p in points], quality_direction(metric))
    return [points[i] for i in idx]


def quality_metric_of(cells: Sequence[CellResult]) -> str | None:
    """The first of :data:`QUALITY_METRICS` that some successful cell measured."""
    for metric in QUALITY_METRICS:
        if any(c.ok and _finite(c.metrics.get(metric)) for c in cells):
            return metric
    return None
