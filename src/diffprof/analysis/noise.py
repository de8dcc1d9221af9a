"""Can the data tell these points apart? What a fit or a Pareto front needs before it is drawn.

A power-law exponent fitted to a 2% spread of process RSS, or a Pareto front drawn through quality
values 0.02 dB apart, states a conclusion the measurement cannot carry. These functions say when
differences are within noise, so figures and summaries say that instead:

- two times differ when their interquartile ranges do not overlap (with too few repeats for a
  range, when they differ by more than :data:`MIN_CHANGE`);
- two quality scores differ when their means are further apart than twice the standard error of
  the difference (the scores are per-prompt samples); without samples, by :data:`MIN_CHANGE`;
- a series of single values (peak memory) varies when its range exceeds :data:`MIN_CHANGE` of
  its median.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from diffprof.stats import SampleStats

#: Relative difference below which single values are taken as equal (clock and thermal drift).
MIN_CHANGE = 0.05
#: The same for peak memory: the CUDA allocator's peak repeats to the byte in one process, so 1%
#: is already a real difference (host RSS is never compared: it grows with whatever ran before).
MIN_MEMORY_CHANGE = 0.01


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def relative_range(values: Sequence[float]) -> float:
    """(max - min) / |median| of the finite values (0 with fewer than two, inf around 0)."""
    xs = _finite(values)
    if len(xs) < 2:
        return 0.0
    centre = abs(float(np.median(xs)))
    spread = max(xs) - min(xs)
    return spread / centre if centre > 0 else (math.inf if spread > 0 else 0.0)


def values_vary(values: Sequence[float], threshold: float = MIN_CHANGE) -> bool:
    """True when single values (one per point) spread by more than ``threshold`` of their median."""
    return relative_range(values) > threshold


def times_differ(a: SampleStats | None, b: SampleStats | None, value_a: float, value_b: float) -> bool:
    """True when two times are told apart: interquartile ranges that do not overlap (3+ samples
    each), else medians more than :data:`MIN_CHANGE` apart."""
    if a is not None and b is not None and a.count >= 3 and b.count >= 3:
        return a.q3 < b.q1 or b.q3 < a.q1
    low, high = sorted((value_a, value_b))
    return low > 0 and high / low - 1 > MIN_CHANGE


def scores_differ(a: Sequence[float] | None, b: Sequence[float] | None, value_a: float, value_b: float) -> bool:
    """True when two quality scores are told apart: means further apart than twice the standard
    error of their difference (2+ samples each); without samples, more than :data:`MIN_CHANGE`
    apart relative to the larger magnitude. Infinite scores (an exact match) differ from finite ones."""
    if math.isinf(value_a) or math.isinf(value_b):
        return value_a != value_b
    xa, xb = _finite(a or []), _finite(b or [])
    if len(xa) >= 2 and len(xb) >= 2:
        se = math.sqrt(np.var(xa, ddof=1) / len(xa) + np.var(xb, ddof=1) / len(xb))
        return abs(np.mean(xa) - np.mean(xb)) > 2 * se if se > 0 else np.mean(xa) != np.mean(xb)
    scale = max(abs(value_a), abs(value_b))
    return scale > 0 and abs(value_a - value_b) / scale > MIN_CHANGE


def any_pair(n: int, differ: Callable[[int, int], bool]) -> bool:
    """Whether ``differ(i, j)`` holds for some pair ``i < j`` of ``n`` points."""
    return any(differ(i, j) for i in range(n) for j in range(i + 1, n))
