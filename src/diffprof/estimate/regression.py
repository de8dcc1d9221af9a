"""Least squares for cost models: relative errors, non-negative coefficients, prediction intervals.

Why relative: calibration points span an order of magnitude (a 32 px call and a 96 px batch of 4),
and timing noise is multiplicative, so an absolute fit would let the largest point decide everything.
The model is ``y = offset + X @ beta`` with ``y_i = mean_i * (1 + e_i)``, ``e_i ~ N(0, sigma^2)``,
fitted by weighted least squares with weights ``1 / mean_i^2`` (iterated, since the weights depend on
the fit).

Why non-negative: every coefficient is a physical cost (seconds per call, seconds per FLOP, bytes per
activation byte). A noisy fit that makes one negative extrapolates nonsense (negative times at small
sizes), so such a feature is dropped and the rest refitted (an active-set NNLS for a few features).

Prediction interval of a new observation at ``x0`` (Student t with ``n - p`` degrees of freedom)::

    var = sigma^2 * yhat0^2            # the new observation's own noise
        + x0' Cov(beta) x0             # uncertainty of the fitted line, Cov = sigma^2 (X'WX)^-1

``sigma`` is floored at :data:`SIGMA_FLOOR`: with 6 points a near-perfect fit says more about luck
than about the next measurement.

The interval itself is multiplicative (:func:`log_interval`): the noise is relative, so a time of
40 ms with a 60% spread is 40 ms x/÷ 2.2, never "0 to 88 ms". A time or a peak is positive, and its
interval's lower end is too (issue 17: a loose fit on a busy host gave "95% intervals clamped at 0").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: Smallest relative residual spread assumed (1%): the noise of a median of a few timed calls.
SIGMA_FLOOR = 0.01
#: Coverage of the prediction intervals reported everywhere.
LEVEL = 0.95


class _Interval:
    """What every fit predicts with: the new observation's noise plus the fit's own uncertainty
    through the gradient of the mean in the coefficients (the features themselves when linear)."""

    cov: tuple[tuple[float, ...], ...]
    sigma: float
    dof: int

    def mean(self, x: Sequence[float], offset: float = 0.0) -> float:
        raise NotImplementedError

    def gradient(self, x: Sequence[float]) -> np.ndarray:
        raise NotImplementedError

    def variance(self, x: Sequence[float], offset: float = 0.0) -> float:
        """Variance of a new observation at ``x`` (its noise plus the fit's uncertainty)."""
        g = self.gradient(x)
        mean = self.mean(x, offset)
        return float(self.sigma**2 * mean**2 + g @ np.asarray(self.cov) @ g)

    @property
    def t(self) -> float:
        """Student-t quantile for :data:`LEVEL` at this fit's degrees of freedom."""
        return t_quantile(self.dof)

    def interval(self, x: Sequence[float], offset: float = 0.0) -> tuple[float, float]:
        return log_interval(self.mean(x, offset), self.variance(x, offset), self.t)


def log_interval(mean: float, variance: float, t: float) -> tuple[float, float]:
    """``mean`` x/÷ ``exp(t * s)``: the interval of a positive quantity with ``variance`` around ``mean``,
    taken on the log scale, where ``s`` is the log-normal spread of that relative variance
    (``s^2 = log(1 + variance / mean^2)``; for small spreads ``s`` is the relative standard deviation,
    so narrow intervals are what the linear ``mean ± t sd`` gives). The lower end is above zero for
    any positive ``mean``; a mean of zero (a part the fit left out) gives ``(0, 0)``.
    """
    if not (mean > 0 and math.isfinite(mean)):
        return (0.0, 0.0) if mean == 0 else (math.nan, math.nan)
    s = math.sqrt(math.log1p(max(0.0, variance) / mean**2))
    return mean * math.exp(-t * s), mean * math.exp(t * s)


@dataclass(frozen=True)
class LinearFit(_Interval):
    """A fitted ``y = offset + x @ coef`` with what it needs to predict with an interval.

    Attributes:
        names: feature names (``"per_call"``, ``"flops"`` ...), one per coefficient.
        coef: coefficients; a feature the fit dropped (it came out negative) has 0.
        cov: covariance of ``coef`` (zeros for dropped features).
        sigma: relative residual standard deviation (floored at :data:`SIGMA_FLOOR`).
        dof: degrees of freedom of the residuals (points minus active features).
        n: points fitted.
        max_rel_residual: the largest relative residual on the calibration points.
    """

    names: tuple[str, ...]
    coef: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    sigma: float
    dof: int
    n: int
    max_rel_residual: float = 0.0

    def mean(self, x: Sequence[float], offset: float = 0.0) -> float:
        return float(offset + np.dot(np.asarray(x, dtype=float), np.asarray(self.coef)))

    def gradient(self, x: Sequence[float]) -> np.ndarray:
        return np.asarray(x, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names), "coef": list(self.coef), "cov": [list(r) for r in self.cov], "sigma": self.sigma,
            "dof": self.dof, "n": self.n, "max_rel_residual": self.max_rel_residual,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearFit:
        return cls(
            tuple(data["names"]), tuple(data["coef"]), tuple(tuple(r) for r in data["cov"]), data["sigma"],
            data["dof"], data["n"], data.get("max_rel_residual", 0.0),
        )


def t_quantile(dof: int, level: float = LEVEL) -> float:
    return float(stats.t.ppf(0.5 + level / 2, max(1, dof)))


def fit_relative(
    x: ArrayLike,
    y: ArrayLike,
    names: Sequence[str],
    offset: ArrayLike | None = None,
    iterations: int = 5,
) -> LinearFit:
    """Fit ``y = offset + x @ coef`` minimising relative errors, every coefficient >= 0.

    Args:
        x: one row of features per point.
        y: measured values (positive).
        names: a name per feature column.
        offset: a known part of each ``y`` (e.g. resident weight bytes), not fitted.
    """
    X = np.asarray(x, dtype=float)
    Y = np.asarray(y, dtype=float)
    n, p = X.shape
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    if n == 0:
        raise ValueError("no points to fit")
    # Column scaling keeps X'WX well conditioned (FLOPs ~1e12 beside a column of ones).
    scale = np.where(np.abs(X).max(axis=0) > 0, np.abs(X).max(axis=0), 1.0)
    Xs = X / scale
    active = [j for j in range(p) if np.any(Xs[:, j] != 0)]
    while True:
        beta = _irls(Xs[:, active], Y - off, Y, off, iterations)
        negative = [active[i] for i, b in enumerate(beta) if b < 0]
        if not negative or len(active) == 1:
            break
        # drop the most negative feature (relative to its scale) and refit
        worst = min(range(len(beta)), key=lambda i: beta[i])
        active.pop(worst)
    beta = np.maximum(beta, 0.0)
    coef = np.zeros(p)
    coef[active] = beta / scale[active]
    pred = off + X @ coef
    rel = (Y - pred) / np.where(pred != 0, pred, 1.0)
    dof = n - len(active)
    sigma = math.sqrt(float(rel @ rel) / dof) if dof > 0 else 0.0
    sigma = max(sigma, SIGMA_FLOOR)
    Xa = Xs[:, active]
    w = 1.0 / np.maximum(pred, 1e-30) ** 2
    xtwx = Xa.T @ (Xa * w[:, None])
    cov_s = sigma**2 * np.linalg.pinv(xtwx)
    cov = np.zeros((p, p))
    for a, i in enumerate(active):
        for b, j in enumerate(active):
            cov[i, j] = cov_s[a, b] / (scale[i] * scale[j])
    return LinearFit(
        names=tuple(names),
        coef=tuple(float(c) for c in coef),
        cov=tuple(tuple(float(v) for v in row) for row in cov),
        sigma=sigma,
        dof=dof,
        n=n,
        max_rel_residual=float(np.max(np.abs(rel))) if n else 0.0,
    )


def _irls(X: np.ndarray, target: np.ndarray, y: np.ndarray, off: np.ndarray, iterations: int) -> np.ndarray:
    """Weighted least squares with weights 1/mean^2, starting from 1/y^2 (iteratively reweighted)."""
    floor = 1e-3 * float(np.max(np.abs(y))) if y.size else 1.0
    mean = np.maximum(np.abs(y), floor)
    beta = np.zeros(X.shape[1])
    for _ in range(iterations):
        w = 1.0 / mean**2
        sw = np.sqrt(w)
        beta, *_ = np.linalg.lstsq(X * sw[:, None], target * sw, rcond=None)
        mean = np.maximum(np.abs(off + X @ beta), floor)
    return beta


# ---------------------------------------------------------------------- overhead and throughput
#: How overhead and compute combine, tried in turn: 1 = they add (a CPU runs the interpreter, then
#: the kernels), larger = they overlap (a GPU computes while the host launches the next kernels, so a
#: small step costs its launches and a large one its FLOPs; 8 is nearly ``max``).
OVERLAPS = (1.0, 2.0, 4.0, 8.0)
#: A larger overlap is chosen only when its leave-one-out error beats every smaller one's by more than this share.
K_MARGIN = 0.25


@dataclass(frozen=True)
class OverheadFit(_Interval):
    """``y = ((a * m)^k + (c * F)^k)^(1/k)``: overhead ``a`` per call ``m``, ``c`` seconds per FLOP ``F``.

    ``k`` is chosen among :data:`OVERLAPS` by leave-one-out error on the calibration points (the
    smallest within :data:`K_MARGIN` of the best: a larger one must earn its place). For
    ``k = 1`` this is the linear ``a*m + c*F`` of :func:`fit_relative`; otherwise a nonlinear
    relative least-squares fit whose interval uses the Jacobian in place of the design matrix
    (the delta method), with the same Student-t quantile and sigma floor.

    Attributes:
        names: the two features (``per_step``/``flops``, ``per_decoder_call``/``flops`` ...).
        k: the overlap exponent.
        coef: ``(a, c)``.
        cov: covariance of ``coef``.
        loo: leave-one-out relative RMS error of the chosen ``k`` (how well it predicts unseen points).
    """

    names: tuple[str, ...]
    k: float
    coef: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    sigma: float
    dof: int
    n: int
    max_rel_residual: float = 0.0
    loo: float = 0.0

    def mean(self, x: Sequence[float], offset: float = 0.0) -> float:
        return offset + _power_sum(self.coef, x, self.k)

    def gradient(self, x: Sequence[float]) -> np.ndarray:
        return _power_sum_gradient(self.coef, x, self.k)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "k": self.k, "coef": list(self.coef), "cov": [list(r) for r in self.cov], "sigma": self.sigma,
                "dof": self.dof, "n": self.n, "max_rel_residual": self.max_rel_residual, "loo": self.loo}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OverheadFit:
        return cls(tuple(data["names"]), data["k"], tuple(data["coef"]), tuple(tuple(r) for r in data["cov"]), data["sigma"],
                   data["dof"], data["n"], data.get("max_rel_residual", 0.0), data.get("loo", 0.0))


def fit_overhead(x: ArrayLike, y: ArrayLike, names: Sequence[str], overlaps: Sequence[float] = OVERLAPS) -> OverheadFit:
    """Fit ``((a*m)^k + (c*F)^k)^(1/k)`` on rows ``[m, F]`` for each ``k``; keep the best by leave-one-out."""
    X = np.asarray(x, dtype=float)
    Y = np.asarray(y, dtype=float)
    candidates = []
    for k in overlaps:
        fit = _fit_power_sum(X, Y, names, k)
        if fit is None:
            continue
        candidates.append((_loo_error(X, Y, names, k), k, fit))
    if not candidates:
        raise ValueError("no overhead model could be fitted")
    lowest = min(c[0] for c in candidates)
    # the smallest overlap that predicts unseen points about as well as the best: a few noisy points
    # make a larger k fit a little better by chance, and then a small call reads as launch-bound
    loo, _, best = min((c for c in candidates if c[0] <= lowest * (1 + K_MARGIN) + 1e-3), key=lambda c: c[1])
    return OverheadFit(best.names, best.k, best.coef, best.cov, best.sigma, best.dof, best.n, best.max_rel_residual, loo)


def _fit_power_sum(X: np.ndarray, Y: np.ndarray, names: Sequence[str], k: float) -> OverheadFit | None:
    linear = fit_relative(X, Y, names)
    if k == 1.0:
        return OverheadFit(tuple(names), 1.0, linear.coef, linear.cov, linear.sigma, linear.dof, linear.n, linear.max_rel_residual)
    if len(Y) < 3 or min(linear.coef) <= 0:
        return None  # one of overhead or throughput is not supported by the data: nothing to combine
    from scipy.optimize import least_squares

    start = np.asarray(linear.coef)

    def residuals(theta: np.ndarray) -> np.ndarray:  # coefficients as log-factors of the linear fit's: positive, well scaled
        return _power_sum_rows(start * np.exp(theta), X, k) / Y - 1

    def jacobian(theta: np.ndarray) -> np.ndarray:  # d residual / d theta: d f / d coef times d coef / d theta (= coef)
        coef = start * np.exp(theta)
        return _power_sum_gradient_rows(coef, X, k) * coef / Y[:, None]

    solution = least_squares(residuals, np.zeros(2), jac=jacobian, bounds=(-5.0, 5.0), method="trf")
    coef = start * np.exp(solution.x)
    pred = _power_sum_rows(coef, X, k)
    rel = (Y - pred) / pred
    n = len(Y)
    dof = n - 2
    sigma = max(math.sqrt(float(rel @ rel) / dof) if dof > 0 else 0.0, SIGMA_FLOOR)
    J = np.array([_power_sum_gradient(coef, row, k) / p for row, p in zip(X, pred)])
    cov = sigma**2 * np.linalg.pinv(J.T @ J)
    return OverheadFit(tuple(names), float(k), tuple(float(c) for c in coef), tuple(tuple(float(v) for v in r) for r in cov),
                       sigma, dof, n, float(np.max(np.abs(rel))))


def _loo_error(X: np.ndarray, Y: np.ndarray, names: Sequence[str], k: float) -> float:
    errors = []
    for i in range(len(Y)):
        keep = np.arange(len(Y)) != i
        fit = _fit_power_sum(X[keep], Y[keep], names, k)
        if fit is None:
            return math.inf
        errors.append(fit.mean(X[i]) / Y[i] - 1)
    return float(np.sqrt(np.mean(np.square(errors))))


def _power_sum(coef: Sequence[float], x: Sequence[float], k: float) -> float:
    u, v = coef[0] * x[0], coef[1] * x[1]
    if k == 1.0:
        return float(u + v)
    top = max(u, v)
    if top <= 0:
        return 0.0
    return float(top * ((u / top) ** k + (v / top) ** k) ** (1 / k))


def _power_sum_rows(coef: Sequence[float], X: np.ndarray, k: float) -> np.ndarray:
    """:func:`_power_sum` of every row of ``X`` at once (the fits evaluate it for each point, each
    iteration and each left-out point: a loop over rows was most of ``estimate``'s fitting time)."""
    u, v = coef[0] * X[:, 0], coef[1] * X[:, 1]
    if k == 1.0:
        return np.asarray(u + v, dtype=float)
    top = np.maximum(u, v)
    safe = np.where(top > 0, top, 1.0)
    return np.where(top > 0, safe * ((u / safe) ** k + (v / safe) ** k) ** (1 / k), 0.0)


def _power_sum_gradient_rows(coef: Sequence[float], X: np.ndarray, k: float) -> np.ndarray:
    """:func:`_power_sum_gradient` of every row of ``X`` (rows: points, columns: d/da, d/dc)."""
    if k == 1.0:
        return np.asarray(X, dtype=float)
    f = _power_sum_rows(coef, X, k)
    uv = X * np.asarray(coef, dtype=float)
    ratio = np.divide(uv, f[:, None], out=np.zeros_like(uv), where=(uv > 0) & (f[:, None] > 0))
    return ratio ** (k - 1) * X


def _power_sum_gradient(coef: Sequence[float], x: Sequence[float], k: float) -> np.ndarray:
    """d/d(a, c) of the power sum (for k = 1 simply the features)."""
    if k == 1.0:
        return np.asarray(x, dtype=float)
    f = _power_sum(coef, x, k)
    if f <= 0:
        return np.zeros(2)
    u, v = coef[0] * x[0], coef[1] * x[1]
    # d f / d u = (u / f)^(k-1); d u / d a = m
    return np.array([(u / f) ** (k - 1) * x[0] if u > 0 else 0.0, (v / f) ** (k - 1) * x[1] if v > 0 else 0.0])
