"""What one cell says: its time per image and spread, throughput, memory figure, noise flag.

Every table, figure and frame reads a cell through these, so the "±" in a table, the error bar of
a plot and the ``noisy`` column of a CSV come from the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffprof.metrics import memory_metrics
from diffprof.results import CellResult
from diffprof.stats import SampleStats


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def images_per_call(cell: CellResult) -> int:
    """How many images one call makes: the ``batch`` setting (or label), 1 when absent."""
    batch = cell.settings.get("batch", cell.labels.get("batch", 1))
    try:
        return max(1, int(batch))
    except (TypeError, ValueError):
        return 1


def time_stats(cell: CellResult) -> SampleStats | None:
    """Seconds per image, one sample per repeat: ``samples["s_per_image"]`` or ``call_s / batch``.

    The spread of these samples is what the ``±`` and the noise flag report; ``None`` when the
    cell kept no samples.
    """
    if cell.samples.get("s_per_image"):
        return SampleStats.from_samples(cell.samples["s_per_image"], "s")
    calls = cell.samples.get("call_s")
    if not calls:
        return None
    n = images_per_call(cell)
    return SampleStats.from_samples([c / n for c in calls], "s")


def is_noisy(cell: CellResult) -> bool:
    """True when the cell's repeats spread by more than the noise threshold (IQR/median > 10%)."""
    stats = time_stats(cell)
    return bool(stats is not None and stats.noisy)


def seconds_per_image(cell: CellResult) -> float | None:
    """The cell's headline time: the ``s_per_image`` metric, else the median of its samples."""
    value = cell.metrics.get("s_per_image")
    if value is not None and not math.isnan(value):
        return float(value)
    stats = time_stats(cell)
    return stats.median if stats is not None and stats.count else None


def timed(cells: Sequence[CellResult]) -> list[tuple[CellResult, float]]:
    """The cells that succeeded and have a positive time per image, with that time."""
    out = []
    for cell in cells:
        t = seconds_per_image(cell)
        if cell.ok and t is not None and math.isfinite(t) and t > 0:
            out.append((cell, t))
    return out


def iqr_bounds(cell: CellResult, centre: float) -> tuple[float, float]:
    """Distances from ``centre`` down to the 25th and up to the 75th percentile of s/image."""
    stats = time_stats(cell)
    if stats is None or stats.count < 2:
        return 0.0, 0.0
    q25, q75 = np.percentile(stats.samples, [25, 75])
    return max(0.0, centre - float(q25)), max(0.0, float(q75) - centre)


def throughput(cell: CellResult) -> float | None:
    """Images per second: the ``images_per_s`` metric, else the inverse of the time per image."""
    value = cell.metrics.get("images_per_s")
    if value is not None and math.isfinite(value) and value > 0:
        return float(value)
    t = seconds_per_image(cell)
    return 1.0 / t if t else None


def memory_value(cell: CellResult, metric: str) -> float | None:
    """A positive, finite memory figure of the cell, else ``None``."""
    value = cell.metrics.get(metric)
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def memory_metric_of(cells: Sequence[CellResult]) -> str | None:
    """The first memory metric (registry order: the allocator's peak first) some cell measured."""
    for metric in memory_metrics():
        if any(memory_value(c, metric) for c in cells):
            return metric
    return None


def pixels(cell: CellResult) -> float | None:
    """Width x height of the cell's images (labels first, then settings)."""
    w = cell.labels.get("width", cell.settings.get("width"))
    h = cell.labels.get("height", cell.settings.get("height"))
    if not (_finite(w) and _finite(h)) or w <= 0 or h <= 0:
        return None
    return float(w) * float(h)


def batch_size(cell: CellResult) -> float | None:
    """The cell's batch (label first, then setting) when it is a positive number."""
    b = cell.labels.get("batch", cell.settings.get("batch"))
    return float(b) if _finite(b) and b > 0 else None
