"""Is B worse than A by more than a threshold, given the noise? The statistics behind every decision.

Inputs are one metric's **per-round values** of a cell in each run (or per-process values, with
``--isolate``; or, for cells stored before rounds, per-call values): independent draws of what a
run measures, whose spread carries the drift between rounds that repeats in one go hide. Timings
are positive and right-skewed, so everything works on log-values: a change is a ratio, and the
threshold is symmetric (1.05x slower is as far as 1/1.05x faster).

- :func:`estimate_change`: the log-ratio of the geometric means, its standard error and degrees of
  freedom (Welch), a two-sided p-value and a confidence interval. A run's :class:`Prior` (the
  variance its cells share, :func:`pooled_prior`) raises a cell whose few rounds agree by luck, and a
  :class:`NoiseFloor` from earlier runs of the same cell (bencher's idea: thresholds from a history
  of baselines) puts a lower bound on the variance, so a run cannot claim more precision than its
  neighbours, or the runs before it, showed.
- :func:`adjust`: p-values corrected for the number of cells compared (Holm: family-wise error;
  Benjamini-Hochberg, the default: false discovery rate, which under "nothing changed" is the
  family-wise rate too, and keeps its power when a change moves many cells at once).
- :func:`judge`: the verdict. A change beyond the threshold that the test backs is a regression or
  an improvement; a cell whose noise is too large to resolve the threshold (the half-width of its
  confidence interval exceeds it) is **too noisy**, with the rounds per run that would give 80%
  power at the threshold (:func:`rounds_needed`), unless its whole interval lies beyond the
  threshold. Nothing here knows about runs, cells or stores: ``compare`` calls it per cell, and
  ``tune`` and ``calibrate`` can call it on their own values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Correction = Literal["bh", "holm", "none"]
CORRECTIONS: tuple[str, ...] = ("bh", "holm", "none")
Verdict = Literal["regression", "improvement", "same", "not significant", "too noisy", "host busy", "failed", "missing"]
#: Power :func:`rounds_needed` aims for at a change the size of the threshold.
POWER = 0.8
#: Beyond this many rounds per run, :func:`rounds_needed` gives up (a cell that noisy needs another setup).
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class NoiseFloor:
    """The spread of a cell's run-level values over earlier runs: ``variance`` of one run's mean
    log-value, estimated from ``runs`` runs (``runs - 1`` degrees of freedom)."""

    variance: float
    runs: int

    @property
    def df(self) -> int:
        return self.runs - 1

    @property
    def relative(self) -> float:
        """The floor's standard deviation as a fraction (0.05: runs scatter by about 5%)."""
        return math.expm1(math.sqrt(self.variance))


@dataclass(frozen=True)
class Change:
    """B against A on log-values: ``log_ratio`` = mean log B - mean log A, with its uncertainty.

    ``variance_a``/``variance_b`` are the per-value (per-round) variances of the log-values
    (after the run's :class:`Prior`), kept so
    :func:`rounds_needed` can ask what more rounds would give; ``floored`` says the history's
    floor, not the rounds, set the standard error.
    """

    log_ratio: float
    se: float
    df: float
    p_value: float | None
    n_a: int
    n_b: int
    variance_a: float
    variance_b: float
    floor: NoiseFloor | None = None
    floored: bool = False

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def half_width(self, alpha: float = 0.05) -> float:
        """Half-width of the two-sided ``1 - alpha`` interval of the log-ratio (inf without a spread)."""
        if self.se == 0 and self.p_value is None:
            return math.inf
        return _t(1 - alpha / 2, self.df) * self.se

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """The ``1 - alpha`` confidence interval of the ratio B/A."""
        hw = self.half_width(alpha)
        return math.exp(self.log_ratio - hw), math.exp(self.log_ratio + hw) if math.isfinite(hw) else math.inf

    @property
    def testable(self) -> bool:
        return self.p_value is not None


@dataclass(frozen=True)
class Judgement:
    """A verdict on one :class:`Change`, the note that explains it, and for ``too noisy`` cells the
    rounds per run that would resolve it (None when more rounds cannot: the floor is between runs)."""

    verdict: Verdict
    note: str = ""
    rounds_needed: int | None = None


def _t(q: float, df: float) -> float:
    from scipy import stats  # scipy is slow to import; only decisions need it

    return float(stats.t.ppf(q, df)) if df > 0 and math.isfinite(df) else float(stats.norm.ppf(q))


def _logs(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    return np.log(x)


def run_value(values: Sequence[float]) -> float | None:
    """A run's value from its per-round values: their geometric mean (None without a positive one)."""
    logs = _logs(values)
    return float(np.exp(logs.mean())) if logs.size else None


def noise_floor(runs: Sequence[Sequence[float]]) -> NoiseFloor | None:
    """The floor from earlier runs' per-round values (one sequence per run): the variance of their
    mean log-values. None with fewer than 3 usable runs (2 degrees of freedom are the least that
    say anything)."""
    means = [float(logs.mean()) for logs in map(_logs, runs) if logs.size]
    if len(means) < 3:
        return None
    return NoiseFloor(float(np.var(means, ddof=1)), len(means))


def _welch(var_a: float, df_a: float, n_a: int, var_b: float, df_b: float, n_b: int) -> tuple[float, float]:
    """Squared standard error and Welch-Satterthwaite degrees of freedom of a difference of means
    (``df_*``: the degrees of freedom behind each side's variance)."""
    qa, qb = var_a / n_a, var_b / n_b
    se2 = qa + qb
    if se2 == 0:
        return 0.0, df_a + df_b
    den = (qa * qa / df_a if df_a > 0 else 0.0) + (qb * qb / df_b if df_b > 0 else 0.0)
    return se2, (se2 * se2 / den) if den > 0 else df_a + df_b


@dataclass(frozen=True)
class Prior:
    """What the other cells of a run say about one cell's per-round variance: their pooled
    ``variance`` (of log-values) and the degrees of freedom behind it (see :func:`pooled_prior`)."""

    variance: float
    df: float


def pooled_prior(variances: Sequence[float], dfs: Sequence[float]) -> Prior | None:
    """The round-to-round variance the cells of one run share: their df-weighted mean.

    The cells of a run measure on one machine in the same rounds, so their relative noise is
    alike, and one cell's three rounds may agree by luck (a chi-square with 2 degrees of freedom
    falls below a tenth of its mean one time in ten). :func:`estimate_change` raises such a cell's
    variance halfway to the pooled one and never lowers a noisy cell's own, so a lucky cell cannot
    claim more precision than its neighbours show, and an unusually noisy one keeps its noise.
    None with fewer than 3 cells (two say little about a third).
    """
    pairs = [(v, d) for v, d in zip(variances, dfs) if math.isfinite(v) and v >= 0 and d > 0]
    if len(pairs) < 3:
        return None
    total = sum(d for _, d in pairs)
    return Prior(sum(v * d for v, d in pairs) / total, total)


def _moderated(var: float, df: float, prior: Prior | None) -> tuple[float, float]:
    """A side's variance and its degrees of freedom after the run's prior (never lowered)."""
    if prior is None:
        return var, df
    if df <= 0 or not math.isfinite(var):
        return prior.variance, prior.df
    if var >= prior.variance:
        return var, df
    return (var + prior.variance) / 2, 2 * df


def estimate_change(
    a: Sequence[float], b: Sequence[float], floor: NoiseFloor | None = None, prior_a: Prior | None = None, prior_b: Prior | None = None
) -> Change:
    """B against A from their per-round values (see the module docstring).

    ``prior_a``/``prior_b`` (:func:`pooled_prior` over each run's cells) raise a side's variance
    halfway to what the run's cells show together when its own is below that. With fewer than 2 values on a side and no
    prior there is no spread of that side to weigh: its variance is taken from the other side
    when that has one (the same cell measured the same way), and when neither has one the change
    has no p-value (``judge`` then decides on size alone) unless a ``floor`` gives the variance.
    Two sides with no spread at all (constant values, e.g. a memory peak) give p = 1 when equal
    and 0 when not.
    """
    from scipy import stats

    la, lb = _logs(a), _logs(b)
    n_a, n_b = int(la.size), int(lb.size)
    if n_a == 0 or n_b == 0:
        return Change(math.nan, math.nan, 0.0, None, n_a, n_b, math.nan, math.nan, floor)
    d = float(lb.mean() - la.mean())
    var_a, df_a = _moderated(float(la.var(ddof=1)) if n_a > 1 else math.nan, n_a - 1.0, prior_a)
    var_b, df_b = _moderated(float(lb.var(ddof=1)) if n_b > 1 else math.nan, n_b - 1.0, prior_b)
    if math.isnan(var_a) and not math.isnan(var_b):
        var_a, df_a = var_b, df_b
    if math.isnan(var_b) and not math.isnan(var_a):
        var_b, df_b = var_a, df_a
    if math.isnan(var_a):  # one value a side, nothing to moderate with
        if floor is None:
            return Change(d, 0.0, 0.0, None, n_a, n_b, math.nan, math.nan)
        se2, df = 0.0, 0.0
    else:
        se2, df = _welch(var_a, df_a, n_a, var_b, df_b, n_b)
    floored = False
    if floor is not None and 2 * floor.variance > se2:
        se2, df, floored = 2 * floor.variance, float(floor.df), True
    se = math.sqrt(se2)
    if se == 0:
        return Change(d, 0.0, df, 1.0 if d == 0 else 0.0, n_a, n_b, var_a, var_b, floor, floored)
    p = float(2 * stats.t.sf(abs(d) / se, df))
    return Change(d, se, df, p, n_a, n_b, var_a, var_b, floor, floored)


def adjust(p_values: Sequence[float | None], method: Correction = "bh") -> list[float | None]:
    """``p_values`` corrected for their number (None entries are left out of the family and kept).

    ``bh``: Benjamini-Hochberg step-up (false discovery rate); ``holm``: Holm's step-down
    (family-wise error rate); ``none``: as given.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = list(p_values)
    m = len(idx)
    if m == 0 or method == "none":
        return out
    ps = np.array([p_values[i] for i in idx], dtype=np.float64)
    order = np.argsort(ps)
    ranked = ps[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        adj = np.minimum.accumulate((m / np.arange(m, 0, -1) * ranked[::-1]))[::-1]
        adj = np.minimum(1.0, adj)
    result = np.empty(m)
    result[order] = adj
    for i, value in zip(idx, result):
        out[i] = float(value)
    return out


def rounds_needed(change: Change, threshold: float, alpha: float = 0.05, power: float = POWER) -> int | None:
    """Rounds per run for ``power`` at a change the size of ``threshold`` (two-sided ``alpha``),
    with the per-round variances ``change`` measured. None when rounds cannot get there: the floor
    from earlier runs alone is wider than that (drift between runs, which more rounds in one run do
    not average out), more than :data:`MAX_ROUNDS` would be needed, or there is no variance."""
    band = math.log1p(threshold)
    if change.floor is not None and (_t(1 - alpha / 2, change.floor.df) + _t(power, change.floor.df)) * math.sqrt(2 * change.floor.variance) > band:
        return None
    var_a, var_b = change.variance_a, change.variance_b
    if not (math.isfinite(var_a) and math.isfinite(var_b)) or var_a + var_b <= 0 or band <= 0:
        return None

    def enough(n: int) -> bool:
        se2, df = _welch(var_a, n - 1.0, n, var_b, n - 1.0, n)
        return (_t(1 - alpha / 2, df) + _t(power, df)) * math.sqrt(se2) <= band

    if not enough(MAX_ROUNDS):
        return None
    low, high = 2, MAX_ROUNDS  # enough() only gets truer with n: bisect
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid + 1, high)
    return low


def processes_needed(floor: NoiseFloor, threshold: float, alpha: float = 0.05, power: float = POWER) -> int | None:
    """Rounds per run, each in its own process (``--isolate``), for ``power`` at ``threshold`` when
    the drift is between processes: a process's value scatters as a whole run of the history does
    (``floor.variance``), so n of them average it down by n. None beyond :data:`MAX_ROUNDS`."""
    band = math.log1p(threshold)
    if band <= 0 or floor.variance <= 0:
        return None
    z = _t(1 - alpha / 2, math.inf) + _t(power, math.inf)
    n = max(2, math.ceil(2 * floor.variance * z * z / (band * band)))
    return n if n <= MAX_ROUNDS else None


def judge(
    change: Change,
    threshold: float,
    *,
    alpha: float = 0.05,
    p_adjusted: float | None = None,
    direction: Literal["lower", "higher"] = "lower",
    busy: str | None = None,
) -> Judgement:
    """The verdict on ``change`` at ``threshold`` (0.05 = 5%), significance level ``alpha``.

    ``p_adjusted`` is the change's p-value after :func:`adjust` (default: its own). ``direction``:
    which way of the metric is better. ``busy``: why the host of either run was busy; a
    regression or improvement measured there becomes ``host busy`` (inconclusive), never believed.
    """
    band = math.log1p(threshold)
    worse = change.log_ratio if direction == "lower" else -change.log_ratio
    if not math.isfinite(worse):
        return Judgement("missing", "no positive values to compare")
    if not change.testable:  # nothing to weigh the change against
        if abs(worse) <= band:
            return Judgement("same", "no spread to test; judged on size alone")
        verdict: Verdict = "regression" if worse > 0 else "improvement"
        return _believed(Judgement(verdict, "no spread to test; judged on size alone"), busy)
    p = change.p_value if p_adjusted is None else p_adjusted
    assert p is not None
    hw = change.half_width(alpha)
    noisy = hw > band
    beyond = abs(worse) > band
    wholly_beyond = abs(worse) - hw > band
    if beyond and p < alpha and (not noisy or wholly_beyond):
        verdict = "regression" if worse > 0 else "improvement"
        note = "" if not noisy else f"noisy (±{_pct(hw)}), but the whole interval is beyond {_pct(band)}"
        return _believed(Judgement(verdict, note), busy)
    if noisy:
        return _too_noisy(change, threshold, alpha, hw)
    if beyond:
        return Judgement("not significant", f"p={p:.2g} after correcting for the cells compared (>= {alpha:g})")
    return Judgement("same")


def _believed(judgement: Judgement, busy: str | None) -> Judgement:
    if busy is None or judgement.verdict not in ("regression", "improvement"):
        return judgement
    note = f"inconclusive: would be a{'n' if judgement.verdict == 'improvement' else ''} {judgement.verdict}, but {busy}"
    return Judgement("host busy", note)


def _too_noisy(change: Change, threshold: float, alpha: float, hw: float) -> Judgement:
    n = rounds_needed(change, threshold, alpha)
    now = max(change.n_a, change.n_b)
    if change.floored and change.floor is not None and n is None:
        isolated = processes_needed(change.floor, threshold, alpha)
        fix = f"with --isolate about {isolated} rounds per run (a process each) would" if isolated else "use --isolate with many rounds"
        note = (f"earlier runs of this cell scatter by ±{_pct(math.sqrt(change.floor.variance))} ({change.floor.runs} runs): "
                f"more rounds in one process do not resolve {_pct(math.log1p(threshold))}; {fix}, or use a larger threshold")
    elif n is None:
        note = f"±{_pct(hw)} at this noise; more than {MAX_ROUNDS} rounds would be needed" if math.isfinite(hw) else "too few values to judge"
    else:
        note = f"±{_pct(hw)} > {_pct(math.log1p(threshold))}: about {n} rounds per run would resolve it (now {now})"
    return Judgement("too noisy", note, n)


def _pct(log_value: float) -> str:
    return f"{100 * math.expm1(log_value):.1f}%" if math.isfinite(log_value) else "inf"
