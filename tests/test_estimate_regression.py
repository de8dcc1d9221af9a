"""Relative least squares of the cost model: coefficients recovered, intervals honest, physics kept."""

from __future__ import annotations

import numpy as np
import pytest

from diffprof.estimate.regression import SIGMA_FLOOR, LinearFit, OverheadFit, fit_overhead, fit_relative, t_quantile


def _design(n: int = 6) -> np.ndarray:
    flops = np.array([1.0, 4.0, 4.0, 9.0, 16.0, 36.0][:n]) * 1e9  # 3 sizes x 2 batches, as calibrated
    return np.column_stack([np.ones(n), flops])


def test_noise_free_data_gives_the_true_coefficients_and_the_floor_sigma():
    X = _design()
    truth = np.array([0.004, 1 / 8e10])  # 4 ms overhead, 80 GFLOP/s
    fit = fit_relative(X, X @ truth, ("per_step", "flops"))
    assert fit.coef == pytest.approx(tuple(truth), rel=1e-9)
    assert fit.sigma == SIGMA_FLOOR and fit.dof == 4 and fit.n == 6
    assert fit.max_rel_residual < 1e-9
    x0 = [1.0, 25e9]
    assert fit.mean(x0) == pytest.approx(0.004 + 25e9 / 8e10)


def test_noisy_data_recovers_coefficients_within_noise():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(60), np.linspace(1e9, 40e9, 60)])
    truth = np.array([0.01, 1 / 5e10])
    y = X @ truth * (1 + 0.02 * rng.standard_normal(60))
    fit = fit_relative(X, y, ("a", "b"))
    assert fit.coef[0] == pytest.approx(truth[0], rel=0.1)
    assert fit.coef[1] == pytest.approx(truth[1], rel=0.03)
    assert 0.015 < fit.sigma < 0.025  # the 2% noise, as a relative spread


def test_relative_weights_let_small_points_count():
    # An absolute fit would let the largest point decide; relative errors keep the small ones exact.
    X = _design()
    y = X @ np.array([0.002, 1e-11])
    y[-1] *= 1.3  # one large outlier
    fit = fit_relative(X, y, ("a", "b"))
    small = [fit.mean(X[i]) / y[i] - 1 for i in range(3)]
    assert max(abs(s) for s in small) < 0.15


def test_a_negative_coefficient_is_dropped_and_the_rest_refitted():
    X = _design()
    y = 0.05 - X[:, 1] * 1e-13  # time that falls with FLOPs: unphysical
    fit = fit_relative(X, y, ("a", "b"))
    assert fit.coef[1] == 0.0 and fit.coef[0] > 0
    assert fit.dof == 5  # one feature left
    assert all(fit.mean(x) > 0 for x in X)


def test_known_offset_is_not_fitted():
    X = np.column_stack([np.ones(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]) * 1e6])
    offset = np.full(5, 5e8)  # e.g. resident weights
    y = offset + X @ np.array([1e7, 2.5])
    fit = fit_relative(X, y, ("baseline", "k"), offset=offset)
    assert fit.coef == pytest.approx((1e7, 2.5), rel=1e-9)
    assert fit.mean([1.0, 1e7], offset=5e8) == pytest.approx(5e8 + 1e7 + 2.5e7)


def test_prediction_intervals_cover_new_observations_at_the_nominal_rate():
    """6 calibration points with 5% multiplicative noise; a new observation at an interpolated and an
    extrapolated point lands in the 95% interval about 95% of the time (400 fits)."""
    rng = np.random.default_rng(1)
    X = _design()
    truth = np.array([0.003, 1 / 6e10])
    hits = {"inside": 0, "beyond": 0}
    points = {"inside": np.array([1.0, 12e9]), "beyond": np.array([1.0, 60e9])}
    trials = 400
    for _ in range(trials):
        y = X @ truth * (1 + 0.05 * rng.standard_normal(len(X)))
        fit = fit_relative(X, y, ("a", "b"))
        for name, x0 in points.items():
            new = float(x0 @ truth) * (1 + 0.05 * rng.standard_normal())
            low, high = fit.interval(x0)
            hits[name] += low <= new <= high
    for name, count in hits.items():
        assert 0.89 <= count / trials <= 0.995, (name, count / trials)


def test_intervals_widen_away_from_the_data():
    X = _design()
    rng = np.random.default_rng(2)
    y = X @ np.array([0.003, 1 / 6e10]) * (1 + 0.03 * rng.standard_normal(6))
    fit = fit_relative(X, y, ("a", "b"))

    def rel_width(f: float) -> float:
        low, high = fit.interval([1.0, f])
        return (high - low) / fit.mean([1.0, f])

    assert rel_width(12e9) < rel_width(200e9)


def test_round_trip_and_t_quantiles():
    fit = fit_relative(_design(), _design() @ np.array([0.01, 1e-11]), ("a", "b"))
    assert LinearFit.from_dict(fit.to_dict()) == fit
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(1000) == pytest.approx(1.962, abs=1e-3)


# ---------------------------------------------------------------------- overhead (+) throughput
def _launch_bound(k: float, flops: np.ndarray, overhead: float = 0.025, s_per_flop: float = 5e-14) -> np.ndarray:
    """A GPU step: launches cost ``overhead``, compute ``s_per_flop``; they overlap as a k-norm."""
    return (overhead**k + (s_per_flop * flops) ** k) ** (1 / k)


def test_additive_costs_keep_the_linear_model():
    X = _design()
    y = X @ np.array([0.004, 1 / 8e10])
    fit = fit_overhead(X, y, ("per_step", "flops"))
    assert fit.k == 1.0 and fit.coef == pytest.approx((0.004, 1 / 8e10), rel=1e-6)
    assert fit.loo < 1e-6


@pytest.mark.parametrize("k", [2.0, 4.0, 8.0])
def test_overlapping_costs_are_recognised_and_predicted(k):
    flops = np.array([1.0, 4.0, 4.0, 9.0, 16.0, 36.0]) * 1e11  # launch-bound at the small end, compute-bound at the large
    X = np.column_stack([np.ones(6), flops])
    rng = np.random.default_rng(int(k))
    y = _launch_bound(k, flops) * (1 + 0.01 * rng.standard_normal(6))
    fit = fit_overhead(X, y, ("per_step", "flops"))
    linear = fit_relative(X, y, ("per_step", "flops"))
    held_out = np.array([2.5e11, 6e11, 12e11, 25e11])
    truth = _launch_bound(k, held_out)
    errors = [fit.mean([1.0, f]) / t - 1 for f, t in zip(held_out, truth)]
    linear_errors = [linear.mean([1.0, f]) / t - 1 for f, t in zip(held_out, truth)]
    assert fit.k > 1
    assert max(abs(e) for e in errors) < 0.03
    assert max(abs(e) for e in linear_errors) > 0.05  # what an additive model would get wrong
    assert OverheadFit.from_dict(fit.to_dict()) == fit


def test_overlap_model_intervals_roughly_cover():
    flops = np.array([1.0, 4.0, 4.0, 9.0, 16.0, 36.0]) * 1e11
    X = np.column_stack([np.ones(6), flops])
    rng = np.random.default_rng(7)
    hits, trials = 0, 120
    for _ in range(trials):
        fit = fit_overhead(X, _launch_bound(4.0, flops) * (1 + 0.03 * rng.standard_normal(6)), ("a", "b"))
        f0 = rng.uniform(1e11, 36e11)
        new = float(_launch_bound(4.0, np.array([f0]))[0]) * (1 + 0.03 * rng.standard_normal())
        low, high = fit.interval([1.0, f0])
        hits += low <= new <= high
    assert 0.82 <= hits / trials <= 0.99  # a little under 95%: k is chosen on the same 6 points


@pytest.mark.parametrize("k", [1.0, 2.0, 4.0, 8.0])
def test_the_row_wise_power_sum_and_its_gradient_are_the_pointwise_ones(k):
    """The fits evaluate the overhead model on all points at once; it must be the per-point formula,
    zero features (no overhead, or no FLOPs) included."""
    from diffprof.estimate.regression import _power_sum, _power_sum_gradient, _power_sum_gradient_rows, _power_sum_rows

    X = np.array([[3.0, 2e9], [0.0, 5e9], [7.0, 0.0], [0.0, 0.0], [1.0, 1e6]])
    coef = (0.02, 1e-10)
    assert np.allclose(_power_sum_rows(coef, X, k), [_power_sum(coef, row, k) for row in X], rtol=1e-12, atol=0)
    assert np.allclose(_power_sum_gradient_rows(coef, X, k), [_power_sum_gradient(coef, row, k) for row in X], rtol=1e-12, atol=0)
