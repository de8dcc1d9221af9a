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
from dataclasses import dataclass, field

from diffprof.analysis.cells import time_stats
from diffprof.analysis.noise import MIN_CHANGE, MIN_MEMORY_CHANGE, any_pair, scores_differ, times_differ, values_vary
from diffprof.metrics import Direction, direction_of, quality_metrics
from diffprof.results import CellResult
from diffprof.stats import SampleStats


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


@dataclass(frozen=True)
class Front:
    """A Pareto front judged against noise.

    ``indices`` are the picks, fastest first: the points no other point beats beyond noise, one
    per group of picks that cannot be told apart (its fastest), with ``ties[i]`` the others of
    that group. Empty when no time and no value differ beyond noise anywhere (then no front is
    drawn or named; ``times_differ`` and ``values_differ`` say which axis lacked differences).
    """

    indices: list[int]
    times_differ: bool
    values_differ: bool
    ties: dict[int, list[int]] = field(default_factory=dict)


def judged_front(
    times: Sequence[float],
    time_samples: Sequence[SampleStats | None],
    values: Sequence[float],
    value_samples: Sequence[Sequence[float] | None] | None,
    direction: Direction,
    value_threshold: float = MIN_CHANGE,
) -> Front:
    """The Pareto front of time against ``values`` where the differences are beyond noise
    (:mod:`diffprof.analysis.noise`: times by their quartiles, scores with per-prompt samples by
    their standard errors, single values such as peak memory by their relative range against
    ``value_threshold``).

    A point is beaten when another is no slower and no worse (within noise) and better beyond
    noise on one axis; of the points nobody beats, those no test tells apart form one pick.
    """
    n = len(times)
    sign = 1.0 if direction == "higher" else -1.0

    def t_apart(i: int, j: int) -> bool:
        return times_differ(time_samples[i], time_samples[j], times[i], times[j])

    def v_apart(i: int, j: int) -> bool:
        if value_samples is None:
            return values_vary([values[i], values[j]], value_threshold)
        return scores_differ(value_samples[i], value_samples[j], values[i], values[j])

    fast, better = any_pair(n, t_apart), (values_vary(values, value_threshold) if value_samples is None else any_pair(n, v_apart))
    if not (fast and better):
        return Front([], fast, better)
    ok = [i for i in range(n) if _finite(times[i]) and _finite(values[i])]

    def beats(j: int, i: int) -> bool:
        faster = t_apart(i, j) and times[j] < times[i]
        slower = t_apart(i, j) and times[j] > times[i]
        up = v_apart(i, j) and sign * values[j] > sign * values[i]
        down = v_apart(i, j) and sign * values[j] < sign * values[i]
        return not slower and not down and (faster or up)

    picks = [i for i in ok if not any(beats(j, i) for j in ok if j != i)]
    picks.sort(key=lambda i: (times[i], -sign * values[i]))
    groups: list[list[int]] = []
    for i in picks:  # the fastest of a group first; a later pick joins a group it cannot be told from
        home = next((g for g in groups if not t_apart(g[0], i) and not v_apart(g[0], i)), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return Front([g[0] for g in groups], fast, better, {g[0]: g[1:] for g in groups if len(g) > 1})


def prompt_count(cell: CellResult) -> int:
    """How many prompts the cell's quality was scored on (0 when not recorded)."""
    about = cell.settings.get("quality")
    prompts = about.get("prompts") if isinstance(about, dict) else None
    return int(prompts) if isinstance(prompts, int) and not isinstance(prompts, bool) else 0


def comparable_points(cells: Sequence[CellResult], metric: str) -> tuple[list[TradeoffPoint], int]:
    """The cells' time/quality points scored on the most prompts, and that count: only cells
    scored alike compare (tune's screens use fewer prompts and drop out)."""
    points = tradeoff_points(cells, metric)
    most = max((prompt_count(p.cell) for p in points), default=0)
    return [p for p in points if prompt_count(p.cell) == most], most


def quality_front(points: Sequence[TradeoffPoint], metric: str) -> Front:
    """:func:`judged_front` of time against quality, per-prompt samples weighing the scores."""
    return judged_front([p.seconds_per_image for p in points], [time_stats(p.cell) for p in points], [p.quality for p in points],
                        [p.cell.samples.get(metric) for p in points], direction_of(metric))


def memory_front(points: Sequence[tuple[CellResult, float, float]]) -> Front:
    """:func:`judged_front` of time against peak memory for ``(cell, bytes, seconds)`` points."""
    return judged_front([t for _, _, t in points], [time_stats(c) for c, _, _ in points], [m for _, m, _ in points], None, "lower",
                        MIN_MEMORY_CHANGE)
