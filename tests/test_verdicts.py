"""The verdict statistics on synthetic per-round values (fixed seeds, so every count is reproducible).

A simulated run: ``C`` cells measured in ``R`` rounds; every value is a cell's base time times
log-normal noise of its own, times a *drift* shared by every cell measured in the same stretch of
time (a busy minute, a clock change). Interleaved rounds put each cell's rounds in different
stretches; the old protocol measured all of a cell's calls in one stretch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from diffprof.analysis.verdicts import (
    processes_needed,
    NoiseFloor,
    Prior,
    adjust,
    estimate_change,
    judge,
    noise_floor,
    pooled_prior,
    rounds_needed,
    run_value,
)

BASES = np.array([0.10, 0.12, 0.09, 0.11, 0.13, 0.10])


def run_rounds(rng: np.random.Generator, factor: float = 1.0, rounds: int = 3, noise: float = 0.01, drift: float = 0.05) -> np.ndarray:
    """Per-round values [cell, round] of one run: the drift of round r hits every cell's round r."""
    shared = rng.normal(0.0, drift, size=rounds)
    own = rng.normal(0.0, noise, size=(BASES.size, rounds))
    return BASES[:, None] * factor * np.exp(shared[None, :] + own)


def run_sequential(rng: np.random.Generator, factor: float = 1.0, calls: int = 3, noise: float = 0.01, drift: float = 0.05) -> np.ndarray:
    """Per-call values [cell, call] of the old protocol: all of a cell's calls share one stretch."""
    shared = rng.normal(0.0, drift, size=BASES.size)
    own = rng.normal(0.0, noise, size=(BASES.size, calls))
    return BASES[:, None] * factor * np.exp(shared[:, None] + own)


def verdicts(a: np.ndarray, b: np.ndarray, threshold: float = 0.05, correction: str = "bh", priors: bool = True) -> list[str]:
    """What compare does per run pair: per-run priors, a change per cell, the correction, judge."""
    def prior(x: np.ndarray) -> Prior | None:
        logs = np.log(x)
        return pooled_prior(list(logs.var(axis=1, ddof=1)), [x.shape[1] - 1.0] * x.shape[0]) if priors else None

    pa, pb = prior(a), prior(b)
    changes = [estimate_change(list(ra), list(rb), prior_a=pa, prior_b=pb) for ra, rb in zip(a, b)]
    adjusted = adjust([c.p_value for c in changes], correction)  # type: ignore[arg-type]
    return [judge(c, threshold, p_adjusted=p).verdict for c, p in zip(changes, adjusted)]


def test_aa_with_drift_between_rounds_gives_no_regression_but_the_old_protocol_does() -> None:
    rng = np.random.default_rng(17)
    pairs = 120
    interleaved = sum("regression" in verdicts(run_rounds(rng), run_rounds(rng)) for _ in range(pairs))
    assert interleaved <= 0.05 * pairs
    # the same drift, all of a cell's calls in one stretch, tested per call: issue 17's false alarms
    sequential = sum("regression" in verdicts(run_sequential(rng), run_sequential(rng), priors=False) for _ in range(pairs))
    assert sequential >= 0.3 * pairs


def test_a_real_shift_beyond_the_threshold_with_low_noise_is_a_regression() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        assert verdicts(run_rounds(rng, noise=0.008, drift=0.003), run_rounds(rng, 1.12, noise=0.008, drift=0.003)) == ["regression"] * BASES.size
    # beyond the threshold the other way: improvements; within it: the same
    assert verdicts(run_rounds(rng, drift=0.005, noise=0.005), run_rounds(rng, 0.85, drift=0.005, noise=0.005)) == ["improvement"] * BASES.size
    assert verdicts(run_rounds(rng, drift=0.003, noise=0.003), run_rounds(rng, 1.02, drift=0.003, noise=0.003)) == ["same"] * BASES.size


def test_high_noise_is_too_noisy_and_the_rounds_it_asks_for_resolve_it() -> None:
    rng = np.random.default_rng(5)
    noise, shift = 0.06, 1.10
    a, b = [1.0, 1.07, 0.94], [1.04, 1.16, 1.10]  # rounds scatter ~6%, B about 9% slower
    change = estimate_change(a, b)
    verdict = judge(change, 0.05)
    assert verdict.verdict == "too noisy" and verdict.rounds_needed is not None and verdict.rounds_needed > 3
    assert f"about {verdict.rounds_needed} rounds per run would resolve it (now 3)" in verdict.note
    # follow it: with that many rounds, the same cell resolves (regression or same, no longer too noisy)
    n = verdict.rounds_needed
    resolved = 0
    for _ in range(100):
        a, b = np.exp(rng.normal(0, noise, n)), shift * np.exp(rng.normal(0, noise, n))
        resolved += judge(estimate_change(list(a), list(b)), 0.05).verdict != "too noisy"
    assert resolved >= 80


def test_a_change_much_larger_than_the_noise_is_believed_even_when_noisy() -> None:
    change = estimate_change([1.0, 1.3, 0.8], [3.0, 3.6, 2.7])
    verdict = judge(change, 0.05)
    assert change.half_width() > math.log1p(0.05)  # noisier than the threshold ...
    assert verdict.verdict == "regression" and "whole interval" in verdict.note  # ... but all of it far beyond


def test_holm_controls_the_family_wise_error_and_bh_the_false_discovery_rate() -> None:
    rng = np.random.default_rng(11)
    m, real, trials, n = 20, 10, 300, 4
    any_false = {"holm": 0, "bh": 0, "none": 0}
    false_share = {"holm": [], "bh": [], "none": []}
    for _ in range(trials):
        shifts = np.r_[np.zeros(m - real), np.full(real, 0.05)]
        p = [estimate_change(list(np.exp(rng.normal(0, 0.03, n))), list(np.exp(rng.normal(s, 0.03, n)))).p_value for s in shifts]
        for method in any_false:
            rejected = np.array(adjust(p, method)) < 0.05  # type: ignore[arg-type]
            false = int(rejected[: m - real].sum())
            any_false[method] += false > 0
            false_share[method].append(false / max(1, int(rejected.sum())))
    assert any_false["holm"] / trials <= 0.05 + 0.03  # family-wise error at 5% (plus simulation error)
    assert float(np.mean(false_share["bh"])) <= 0.05 + 0.02  # false discovery rate at 5%
    assert any_false["none"] / trials > 0.3  # uncorrected, 10 null cells give a false alarm most of the time


def test_adjust_matches_the_textbook_procedures() -> None:
    p = [0.01, 0.04, 0.03, 0.5, None, 0.002]
    bh = adjust(p, "bh")
    expected = stats.false_discovery_control([0.01, 0.04, 0.03, 0.5, 0.002], method="bh")
    assert [x for x in bh if x is not None] == pytest.approx(list(expected)) and bh[4] is None
    holm = adjust(p, "holm")  # sorted 0.002, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1, made monotone
    assert holm[4] is None
    assert [holm[i] for i in (0, 1, 2, 3, 5)] == pytest.approx([0.04, 0.09, 0.09, 0.5, 0.01])
    assert adjust(p, "none") == p
    with pytest.raises(ValueError, match="unknown correction"):
        adjust(p, "bonferroni")  # type: ignore[arg-type]


def test_the_prior_raises_a_lucky_cell_and_never_lowers_a_noisy_one() -> None:
    prior = pooled_prior([0.04**2] * 6, [2.0] * 6)
    assert prior is not None and prior.df == 12 and math.sqrt(prior.variance) == pytest.approx(0.04)
    assert pooled_prior([0.01, 0.02], [2.0, 2.0]) is None  # two cells say little about a third
    lucky_a, lucky_b = [1.0, 1.0005, 0.9995], [1.07, 1.0705, 1.0695]  # 7% apart, rounds agree to 0.05%
    assert judge(estimate_change(lucky_a, lucky_b), 0.05).verdict == "regression"
    raised = estimate_change(lucky_a, lucky_b, prior_a=prior, prior_b=prior)
    assert raised.variance_a == pytest.approx((np.var(np.log(lucky_a), ddof=1) + prior.variance) / 2)
    assert judge(raised, 0.05).verdict == "too noisy"  # with its neighbours' 4% noise, 7% is not resolved
    noisy = [1.0, 1.1, 0.9]
    kept = estimate_change(noisy, noisy, prior_a=prior, prior_b=prior)
    assert kept.variance_a == pytest.approx(float(np.var(np.log(noisy), ddof=1)))


def test_a_noise_floor_from_earlier_runs_stops_a_tight_run_from_claiming_precision() -> None:
    tight_a, tight_b = [1.00, 1.001, 0.999], [1.10, 1.101, 1.099]  # rounds agree, runs differ by 10%
    alone = judge(estimate_change(tight_a, tight_b), 0.05)
    assert alone.verdict == "regression"  # without history: believed
    drift = noise_floor([[1.0, 1.0, 1.0], [1.2, 1.2, 1.2], [0.85, 0.85, 0.85], [1.1, 1.1, 1.1]])  # earlier runs scatter ~15%
    assert drift is not None and drift.runs == 4 and drift.relative == pytest.approx(0.15, abs=0.03)
    change = estimate_change(tight_a, tight_b, floor=drift)
    verdict = judge(change, 0.05)
    assert change.floored and verdict.verdict == "too noisy" and verdict.rounds_needed is None
    assert "more rounds in one process do not resolve" in verdict.note
    # a process scatters by ~15%: n processes per run give a standard error of 0.15 * sqrt(2 / n); 80% power at 5% needs n ~ 2 * 0.15^2 * 2.8^2 / 0.049^2
    needed = processes_needed(drift, 0.05)
    assert needed is not None and 130 < needed < 200 and f"with --isolate about {needed} rounds per run" in verdict.note
    assert processes_needed(drift, 0.5) <= 3  # a 50% threshold: a few processes
    calm = noise_floor([[1.0], [1.002], [0.998], [1.001]])  # earlier runs agree: the floor stays below the rounds
    assert judge(estimate_change(tight_a, tight_b, floor=calm), 0.05).verdict == "regression"
    assert noise_floor([[1.0], [1.1]]) is None


def test_a_change_measured_on_a_busy_host_is_not_believed() -> None:
    change = estimate_change([1.0, 1.01, 0.99], [1.3, 1.31, 1.29])
    assert judge(change, 0.05).verdict == "regression"
    busy = judge(change, 0.05, busy="run B's host was busy (others took 1.2 of 2 cores)")
    assert busy.verdict == "host busy" and "would be a regression, but run B's host was busy" in busy.note
    faster = estimate_change([1.3, 1.31, 1.29], [1.0, 1.01, 0.99])
    assert judge(faster, 0.05, busy="x").verdict == "host busy"
    same = estimate_change([1.0, 1.01, 0.99], [1.0, 1.01, 0.995])
    assert judge(same, 0.05, busy="x").verdict == "same"  # nothing to disbelieve


def test_edge_cases_one_value_constant_values_direction() -> None:
    single = estimate_change([1.0], [1.2])
    assert not single.testable and judge(single, 0.05).verdict == "regression" and "size alone" in judge(single, 0.05).note
    assert judge(estimate_change([1.0], [1.02]), 0.05).verdict == "same"
    one_side = estimate_change([1.0], [1.30, 1.31, 1.29])  # the spread of the side that has one
    assert one_side.testable and judge(one_side, 0.05).verdict == "regression"
    constant = estimate_change([2.0, 2.0], [2.4, 2.4])
    assert constant.p_value == 0.0 and judge(constant, 0.05).verdict == "regression"
    assert estimate_change([2.0, 2.0], [2.0, 2.0]).p_value == 1.0
    higher = estimate_change([10.0, 10.1, 9.9], [7.0, 7.1, 6.9])  # a rate fell
    assert judge(higher, 0.05, direction="higher").verdict == "regression"
    assert judge(estimate_change([], [1.0]), 0.05).verdict == "missing"
    assert run_value([1.0, 4.0]) == pytest.approx(2.0) and run_value([]) is None


def test_rounds_needed_grows_with_noise_and_shrinks_with_the_threshold() -> None:
    rng = np.random.default_rng(8)
    a, b = list(np.exp(rng.normal(0, 0.05, 3))), list(np.exp(rng.normal(0, 0.05, 3)))
    change = estimate_change(a, b)
    at5, at10 = rounds_needed(change, 0.05), rounds_needed(change, 0.10)
    assert at5 is not None and at10 is not None and at5 > at10 >= 2
    wide = NoiseFloor(0.2**2, 5)
    assert rounds_needed(estimate_change(a, b, floor=wide), 0.05) is None
