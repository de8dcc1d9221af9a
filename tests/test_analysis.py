"""Analysis as pure functions over results: fits, the knee, Pareto fronts, per-cell figures and the
noise flag, verdicts from two in-memory runs (no store), and the one flat frame of a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffprof.analysis import (
    KNEE_FRACTION,
    cell_records,
    cells_frame,
    compare,
    find_knee,
    images_per_call,
    is_noisy,
    pareto_front,
    power_law_fit,
    seconds_per_image,
    throughput,
    time_stats,
)
from diffprof.analysis.cells import batch_size, iqr_bounds, memory_metric_of, pixels, timed
from diffprof.results import CellResult, RunInfo


def run_of(rid: int, cells: list[CellResult], environment: dict | None = None) -> RunInfo:
    return RunInfo(rid, "2026-11-26T10:00:00", None, "finished", "bench", {}, environment or {}, cells)


# ---------------------------------------------------------------------------------------------
# Fits and the knee


def test_power_law_fit_recovers_exponents():
    pixels = np.array([256, 512, 768, 1024]) ** 2
    assert power_law_fit(pixels, 3e-6 * pixels).exponent == pytest.approx(1.0, abs=1e-9)
    fit = power_law_fit(pixels, 2e-12 * pixels**2.0)
    assert fit.exponent == pytest.approx(2.0, abs=1e-9) and fit.coefficient == pytest.approx(2e-12)
    assert fit(1024**2) == pytest.approx(2e-12 * 1024**4)
    assert power_law_fit([512, 512], [1.0, 1.1]) is None and power_law_fit([1, 2], [0.0, -1.0]) is None


def test_power_law_fit_with_noise_and_bad_points():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e4, 1e7, 12)
    y = 5e-9 * x**1.5 * rng.lognormal(0.0, 0.02, x.size)
    fit = power_law_fit([*x, 0.0, None], [*y, 1.0, 2.0])  # a zero and a None are skipped
    assert fit.exponent == pytest.approx(1.5, abs=0.02) and fit.coefficient == pytest.approx(5e-9, rel=0.3)


def test_find_knee():
    assert find_knee([1, 2, 4, 8, 16], [1.0, 1.8, 3.0, 3.4, 3.5]) == pytest.approx(find_knee([16, 8, 4, 2, 1], [3.5, 3.4, 3.0, 1.8, 1.0]))
    knee = find_knee([1, 2, 4, 8, 16], [1.0, 1.8, 3.0, 3.4, 3.5])
    assert knee.batch == 8 and knee.best == 3.5 and knee.fraction == KNEE_FRACTION
    assert find_knee([1, 2, 4], [2.0, 2.0, 2.0]).batch == 1  # flat: batching never pays
    assert find_knee([1, 2, 4, 8], [1.0, 2.0, 4.0, 3.0]).batch == 4  # throughput falls after the peak
    assert find_knee([1, 2], [float("nan"), 0.0]) is None
    assert find_knee([1, 2, 4], [1.0, 1.5, 1.6], fraction=0.5).batch == 1


# ---------------------------------------------------------------------------------------------
# Pareto fronts (the one implementation: time/quality for tune and plots, time/memory for plots)


def test_pareto_front_on_crafted_points():
    times = [1.0, 2.0, 1.5, 3.0, 2.0, 0.5]
    quality = [0.5, 0.8, 0.4, 0.9, 0.8, 0.1]
    assert pareto_front(times, quality) == [5, 0, 1, 4, 3]  # (1.5, 0.4) is beaten by (1.0, 0.5); the tie at 2.0 both kept
    assert pareto_front(times, quality, "lower") == [5]
    memory = [5.2, 4.9, 4.6, 4.4, 2.8]
    seconds = [1.00, 1.35, 1.02, 1.06, 2.10]  # the memory suite: time against memory, both lower-is-better
    assert pareto_front(seconds, memory, "lower") == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="2 times but 1 qualities"):
        pareto_front([1.0, 2.0], [1.0])


# ---------------------------------------------------------------------------------------------
# One cell's figures and the noise flag


def test_time_per_image_divides_calls_by_the_batch_and_flags_noise():
    steady = CellResult("batch", {"batch": 4}, {"batch": 4}, metrics={"s_per_image": 0.25}, samples={"call_s": [0.99, 1.0, 1.01]})
    assert images_per_call(steady) == 4
    stats = time_stats(steady)
    assert stats.median == pytest.approx(0.25) and stats.iqr == pytest.approx(0.0025)
    assert not is_noisy(steady) and stats.relative_iqr == pytest.approx(0.01)
    spiky = CellResult("steps", {"steps": 10}, {}, samples={"call_s": [0.8, 1.0, 1.3]})
    assert is_noisy(spiky) and time_stats(spiky).relative_iqr == pytest.approx(0.25)
    assert seconds_per_image(spiky) == pytest.approx(1.0)  # no metric: the median of the samples
    assert throughput(spiky) == pytest.approx(1.0) and throughput(steady) == pytest.approx(4.0)
    lo, hi = iqr_bounds(spiky, 1.0)
    assert (lo, hi) == (pytest.approx(0.1), pytest.approx(0.15))
    bare = CellResult("x", {}, {"batch": "lots"})
    assert images_per_call(bare) == 1 and time_stats(bare) is None and not is_noisy(bare) and seconds_per_image(bare) is None
    own = CellResult("x", {}, {}, samples={"s_per_image": [2.0, 2.0], "call_s": [9.0, 9.0]})
    assert time_stats(own).median == 2.0  # a cell's own per-image samples win


def test_cells_a_figure_can_use():
    cells = [
        CellResult("r", {"width": 512, "height": 256}, {}, metrics={"s_per_image": 1.0, "host_peak_rss_bytes": 3e9}),
        CellResult("r", {"width": 512}, {"height": 512}, metrics={"s_per_image": 2.0, "peak_allocated_bytes": 2e9}),
        CellResult("r", {"width": 64}, {}, status="failed", metrics={"s_per_image": 0.1}),
        CellResult("r", {"batch": True}, {}, metrics={"s_per_image": 0.0}),
    ]
    assert [t for _, t in timed(cells)] == [1.0, 2.0]  # failed and zero-time cells drop out
    assert [pixels(c) for c in cells] == [512 * 256, 512 * 512, None, None]
    assert batch_size(cells[3]) is None  # a bool is not a batch
    assert memory_metric_of(cells) == "peak_allocated_bytes"  # the allocator's peak before RSS
    assert memory_metric_of(cells[:1]) == "host_peak_rss_bytes" and memory_metric_of(cells[2:]) is None


# ---------------------------------------------------------------------------------------------
# Verdicts from two runs, no store


def _cell(label: str, calls: list[float], status: str = "ok", **metrics: float) -> CellResult:
    values = {"s_per_image": float(np.median(calls))} if calls else {}
    values.update(metrics)
    return CellResult("s", {"x": label}, {"steps": 20}, status=status, error=None if status == "ok" else "boom\nmore",  # type: ignore[arg-type]
                      metrics=values, samples={"call_s": calls} if calls else {})


def test_every_verdict_from_in_memory_runs():
    rng = np.random.default_rng(1)

    def calls(base: float, noise: float = 0.01) -> list[float]:
        return (base * rng.lognormal(0.0, noise, 6)).tolist()

    a = run_of(1, [_cell("slower", calls(1.0)), _cell("faster", calls(1.0)), _cell("same", calls(1.0)),
                   _cell("noisy", [1.0, 2.0, 0.6]), _cell("broken", calls(1.0)), _cell("nomfu", calls(1.0), mfu=0.4),
                   _cell("gone", calls(1.0))], {"torch": "2.13"})  # fmt: skip
    b = run_of(2, [_cell("slower", calls(1.3)), _cell("faster", calls(0.7)), _cell("same", calls(1.0)),
                   _cell("noisy", [1.3, 0.7, 2.5]), _cell("broken", [], status="failed"), _cell("nomfu", calls(1.0), mfu=math.nan),
                   _cell("new", calls(1.0))], {"torch": "2.14"})  # fmt: skip
    result = compare(a, b)
    verdicts = {c.labels["x"]: c.verdict for c in result.cells}
    assert verdicts == {"slower": "regression", "faster": "improvement", "same": "same", "noisy": "too noisy",
                        "broken": "failed", "nomfu": "same"}  # fmt: skip
    assert [c.labels["x"] for c in result.only_a] == ["gone"] and [c.labels["x"] for c in result.only_b] == ["new"]
    assert result.has_regression and [c.labels["x"] for c in result.newly_failed] == ["broken"]
    assert result.environment_changes == {"torch": ("2.13", "2.14")}
    assert result.summary() == "1 regression, 1 improvement, 2 same, 1 too noisy, 1 failed; 1 cell only in A, 1 cell only in B"
    mfu = compare(a, b, metric="mfu")
    assert {c.labels["x"]: c.verdict for c in mfu.cells}["nomfu"] == "missing" and mfu.sample is None


# ---------------------------------------------------------------------------------------------
# One frame


def test_cell_records_columns_and_values():
    cells = [
        CellResult("s", {"scheduler": "euler", "noisy": "yes"}, {}, metrics={"mfu": 0.3, "s_per_image": 1.0, "aesthetic": 2.0},
                   samples={"call_s": [0.8, 1.0, 1.3]}, id=7),
        CellResult("s", {"scheduler": "ddim"}, {}, status="failed", error="boom", id=8),
    ]
    columns, records = cell_records(run_of(3, cells))
    assert columns == ["run_id", "cell_id", "suite", "scheduler", "label_noisy", "status", "s_per_image", "mfu", "aesthetic",
                       "s_per_image_iqr", "noisy", "error"]  # fmt: skip
    assert records[0]["label_noisy"] == "yes" and records[0]["noisy"] is True and records[0]["s_per_image_iqr"] == pytest.approx(0.25)
    assert records[1]["s_per_image"] is None and records[1]["error"] == "boom" and records[1]["cell_id"] == 8
    pytest.importorskip("pandas")
    frame = cells_frame(run_of(3, cells))
    assert list(frame.columns) == columns and frame["mfu"].dtype.kind == "f" and math.isnan(frame["mfu"].iloc[1])
