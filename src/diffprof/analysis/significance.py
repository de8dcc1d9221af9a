"""Is a difference between two sets of repeats real? The test behind ``compare``.

:func:`significance` uses Mann-Whitney U where it can reach ``alpha`` at all: its exact
two-sided p-value is at least ``2 / C(n_a + n_b, n_a)``, which is 0.10 for 3 vs 3 samples, so with
the usual 3 repeats it could never flag anything. Below that it uses Welch's t-test on log-times:
it can work with 2-3 samples because it assumes a shape (log-normal, the usual shape of timings,
which are positive and right-skewed), and it stays conservative where that is doubtful, because
one spike inflates the variance and the p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def min_mannwhitney_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value Mann-Whitney U can give for these sample sizes (no ties)."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def significance(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> tuple[float | None, str]:
    """Two-sided p-value that samples ``a`` and ``b`` come from one distribution, and the test used.

    Mann-Whitney U when it can reach ``alpha`` for these sizes, else Welch's t-test on logs (on raw
    values if any is not positive); ``(None, "none")`` with fewer than 2 samples on a side. Two
    constant series give p = 1 when equal and 0 when not (no test has anything to weigh).
    """
    from scipy import stats  # scipy is slow to import; only comparisons need it

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return None, "none"
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return (1.0 if x[0] == y[0] else 0.0), "constant"
    if min_mannwhitney_p(x.size, y.size) < alpha:
        return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue), "mann-whitney"
    logs = bool((x > 0).all() and (y > 0).all())
    if logs:
        x, y = np.log(x), np.log(y)
    p = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
    return (1.0 if math.isnan(p) else p), ("welch-log" if logs else "welch")
