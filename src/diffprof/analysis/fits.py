"""Curves fitted to a sweep: how cost scales with pixels, and where batching stops paying."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A batch reaching this fraction of the best throughput is "at the knee" (see :func:`find_knee`).
KNEE_FRACTION = 0.9


@dataclass(frozen=True)
class PowerLaw:
    """``y = coefficient * x ** exponent``, fitted by least squares on log-log axes."""

    exponent: float
    coefficient: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.coefficient * np.power(x, self.exponent)


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> PowerLaw | None:
    """Fit ``y ∝ x^k`` (``numpy.polyfit`` of log y on log x); ``None`` without two distinct positive x.

    An exponent near 1 for time against pixels means cost grows with the pixel count (convolution
    bound); near 2 means attention over all latent positions dominates.
    """
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and a > 0 and b > 0]
    if len({a for a, _ in pairs}) < 2:
        return None
    lx = np.log([a for a, _ in pairs])
    ly = np.log([b for _, b in pairs])
    slope, intercept = np.polyfit(lx, ly, 1)
    return PowerLaw(float(slope), float(math.exp(intercept)))


@dataclass(frozen=True)
class Knee:
    """The smallest batch whose throughput is at least ``fraction`` of the best one measured."""

    batch: float
    throughput: float
    best: float
    fraction: float = KNEE_FRACTION


def find_knee(batches: Sequence[float], throughput: Sequence[float], fraction: float = KNEE_FRACTION) -> Knee | None:
    """Where batching stops paying: the smallest batch reaching ``fraction`` (90%) of the maximum
    images/s. Simpler than the kneedle method and it answers the practical question directly:
    larger batches buy at most 10% more throughput for proportionally more memory and latency."""
    points = sorted((b, t) for b, t in zip(batches, throughput) if t is not None and math.isfinite(t) and t > 0)
    if not points:
        return None
    best = max(t for _, t in points)
    for b, t in points:
        if t >= fraction * best:
            return Knee(b, t, best, fraction)
    return None  # pragma: no cover - the best point always qualifies
