"""Run comparison: matching, significance, verdicts, directions, thresholds and the tables.

Timings are synthetic and seeded: a base time per cell times a factor, with log-normal noise like
real repeats, so every verdict here is deterministic. These cells are stored without rounds (as
older versions stored them): compare weighs their per-call samples. Rounds, noise floors, the
correction and the host-busy check are tested in test_verdicts.py and test_rounds.py; the noise
floor read from a store's history (and from a baseline's other store) at the end of this file. The
runs are stored in SQLite and in PostgreSQL (the ``store_url`` fixture): one test body, the same
verdicts.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from rich.console import Console

from diffprof.analysis.compare import compare, match_cells
from diffprof.analysis.significance import min_mannwhitney_p
from diffprof.errors import ConfigError
from diffprof.metrics import direction_of
from diffprof.report.console_tables import cells_table, comparison_table, runs_table
from diffprof.report.format import format_metric
from diffprof.results import CellResult
from diffprof.store import Store, compare_runs, significance

BASE = {"euler": 1.00, "ddim": 1.20, "dpm++": 0.85}


def bench_run(
    store: Store,
    factor: float = 1.0,
    seed: int = 0,
    n: int = 5,
    noise: float = 0.02,
    schedulers: tuple[str, ...] = tuple(BASE),
    environment: dict | None = None,
    settings: dict | None = None,
) -> int:
    """A run like `diffprof bench --suite schedulers`: call_s samples and the metrics derived from them."""
    rng = np.random.default_rng(seed)
    rid = store.create_run("diffprof bench", {"repeats": n}, environment or {"torch": {"version": "2.13.0"}})
    for name in schedulers:
        calls = (BASE[name] * factor * rng.lognormal(0.0, noise, size=n)).tolist()
        median = float(np.median(calls))
        store.add_cell(
            rid,
            CellResult(
                suite="schedulers",
                labels={"scheduler": name},
                settings={"scheduler": name, "steps": 20, **(settings or {})},
                metrics={"s_per_image": median, "images_per_s": 1.0 / median, "peak_allocated_bytes": 2.0e9},
                samples={"call_s": calls},
            ),
        )
    store.finish_run(rid)
    return rid


@pytest.fixture
def store(store_url: str):
    """Each comparison test runs on both backends: verdicts must not depend on where runs are stored."""
    with Store(store_url) as s:
        yield s


@pytest.mark.parametrize("n", [3, 5, 10])
def test_a_30_percent_slowdown_is_a_regression(store: Store, n: int) -> None:
    a = bench_run(store, 1.0, seed=1, n=n)
    b = bench_run(store, 1.3, seed=2, n=n)
    cmp = compare_runs(store, a, b)
    assert (cmp.run_a, cmp.run_b, cmp.metric, cmp.sample, cmp.direction) == (a, b, "s_per_image", "call_s", "lower")
    assert [c.verdict for c in cmp.cells] == ["regression"] * 3
    assert cmp.has_regression and len(cmp.regressions) == 3
    for c in cmp.cells:
        assert c.ratio == pytest.approx(1.3, rel=0.06)
        assert c.change == pytest.approx(c.ratio - 1)
        assert c.p_value is not None and c.p_value < 0.05
        assert c.test == "welch-log calls" and c.evidence == "calls" and (c.n_a, c.n_b) == (n, n)
        assert c.median_a == pytest.approx(c.value_a) and c.median_b == pytest.approx(c.value_b)
        assert c.low is not None and c.high is not None and 1.0 < c.low < c.ratio < c.high
    assert cmp.geomean_ratio == pytest.approx(1.3, rel=0.05)
    assert cmp.summary() == "3 regressions"


def test_a_run_against_itself_is_the_same(store: Store) -> None:
    a = bench_run(store, seed=3, noise=0.005)
    cmp = compare_runs(store, a, a)
    assert [c.verdict for c in cmp.cells] == ["same"] * 3
    assert all(c.ratio == 1.0 and c.p_value == pytest.approx(1.0) for c in cmp.cells)
    assert not cmp.has_regression and cmp.only_a == [] and cmp.only_b == []
    assert cmp.environment_changes == {}


def test_two_runs_of_the_same_code_are_not_regressions(store: Store) -> None:
    a = bench_run(store, seed=4, n=3)
    b = bench_run(store, seed=5, n=3)
    cmp = compare_runs(store, "latest~1", "latest")
    assert (cmp.run_a, cmp.run_b) == (a, b)
    assert not cmp.has_regression
    assert all(c.verdict in ("same", "not significant", "too noisy") for c in cmp.cells)


def test_a_speedup_is_an_improvement(store: Store) -> None:
    a = bench_run(store, 1.0, seed=6)
    b = bench_run(store, 0.7, seed=7)
    cmp = compare_runs(store, a, b)
    assert [c.verdict for c in cmp.cells] == ["improvement"] * 3
    assert not cmp.has_regression and len(cmp.improvements) == 3


def test_higher_is_better_metrics_invert_the_verdict(store: Store) -> None:
    a = bench_run(store, 1.0, seed=8)
    b = bench_run(store, 1.3, seed=9)
    slower = compare_runs(store, a, b, metric="images_per_s")
    assert slower.direction == "higher" and slower.sample == "call_s"
    assert all(c.verdict == "regression" and c.ratio == pytest.approx(1 / 1.3, rel=0.06) for c in slower.cells)
    faster = compare_runs(store, b, a, metric="images_per_s")
    assert all(c.verdict == "improvement" for c in faster.cells)


def test_threshold_is_respected(store: Store) -> None:
    a = bench_run(store, 1.00, seed=10, n=10, noise=0.002)
    b = bench_run(store, 1.03, seed=11, n=10, noise=0.002)
    cmp = compare_runs(store, a, b, threshold=0.05)
    # a real, significant 3% slowdown: below the 5% threshold it is "same"
    assert all(c.p_value is not None and c.p_value < 0.001 for c in cmp.cells)
    assert [c.verdict for c in cmp.cells] == ["same"] * 3 and not cmp.has_regression
    tight = compare_runs(store, a, b, threshold=0.01)
    assert [c.verdict for c in tight.cells] == ["regression"] * 3


def test_a_large_but_noisy_change_is_not_significant(store: Store) -> None:
    rid_a = store.create_run("a", {}, {})
    rid_b = store.create_run("b", {}, {})
    for rid, calls in ((rid_a, [1.0, 1.25, 0.8]), (rid_b, [1.3, 1.05, 1.55])):
        store.add_cell(rid, CellResult("s", {"x": 1}, {}, metrics={"s_per_image": float(np.median(calls))}, samples={"call_s": calls}))
    (cell,) = compare_runs(store, rid_a, rid_b).cells
    assert cell.ratio == pytest.approx(1.28, rel=0.02)  # of the geometric means of the calls
    assert cell.verdict == "too noisy" and cell.p_value is not None and cell.p_value > 0.05
    assert "rounds per run would resolve it" in cell.note and cell.rounds_needed is not None and cell.rounds_needed > 10


def test_unmatched_cells_are_reported(store: Store) -> None:
    a = bench_run(store, schedulers=("euler", "ddim"), seed=12)
    b = bench_run(store, schedulers=("ddim", "dpm++"), seed=13)
    cmp = compare_runs(store, a, b)
    assert [c.labels for c in cmp.cells] == [{"scheduler": "ddim"}]
    assert [c.labels for c in cmp.only_a] == [{"scheduler": "euler"}]
    assert [c.labels for c in cmp.only_b] == [{"scheduler": "dpm++"}]
    assert cmp.summary() == "1 same; 1 cell only in A, 1 cell only in B"


def test_matching_uses_suite_and_labels_not_settings(store: Store) -> None:
    a = bench_run(store, seed=14)
    b = bench_run(store, seed=15, settings={"steps": 30}, environment={"torch": {"version": "2.14.0"}})
    cmp = compare_runs(store, a, b)
    assert len(cmp.cells) == 3
    assert all(c.settings_changes == {"steps": (20, 30)} for c in cmp.cells)
    assert cmp.environment_changes == {"torch.version": ("2.13.0", "2.14.0")}


def test_match_cells_pairs_duplicates_in_order() -> None:
    def cell(suite: str, i: int, **labels: object) -> CellResult:
        return CellResult(suite, dict(labels), {"i": i})

    a = [cell("s", 1, x=1), cell("s", 2, x=1), cell("t", 3, x=1)]
    b = [cell("s", 4, x=1), cell("t", 5, x=2), cell("s", 6, x=1), cell("s", 7, x=1)]
    pairs, only_a, only_b = match_cells(a, b)
    assert [(p.settings["i"], q.settings["i"]) for p, q in pairs] == [(1, 4), (2, 6)]
    assert [c.settings["i"] for c in only_a] == [3]
    assert [c.settings["i"] for c in only_b] == [5, 7]


def test_failed_cells(store: Store) -> None:
    def run(statuses: dict[str, str]) -> int:
        rid = store.create_run("bench", {}, {})
        for name, status in statuses.items():
            ok = status == "ok"
            store.add_cell(
                rid,
                CellResult(
                    "schedulers", {"scheduler": name}, {}, status=status,  # type: ignore[arg-type]
                    error=None if ok else "torch.OutOfMemoryError: CUDA out of memory\n  at ...",
                    metrics={"s_per_image": 1.0} if ok else {}, samples={"call_s": [1.0, 1.01, 0.99]} if ok else {},
                ),
            )
        return rid

    a = run({"euler": "ok", "ddim": "failed", "dpm++": "failed"})
    b = run({"euler": "failed", "ddim": "ok", "dpm++": "failed"})
    cmp = compare_runs(store, a, b)
    assert [(c.verdict, c.failed_in) for c in cmp.cells] == [("failed", "B"), ("failed", "A"), ("failed", "both")]
    assert cmp.cells[0].note == "failed in B: torch.OutOfMemoryError: CUDA out of memory"
    assert cmp.newly_failed == [cmp.cells[0]] and cmp.has_regression and cmp.regressions == []
    fixed = compare_runs(store, b, a)  # the other way round only a fix and an old failure remain broken
    assert [c.failed_in for c in fixed.newly_failed] == ["B"]
    assert fixed.newly_failed[0].labels == {"scheduler": "ddim"}


def test_metric_without_samples_is_judged_on_size(store: Store) -> None:
    rid_a, rid_b = store.create_run("a", {}, {}), store.create_run("b", {}, {})
    store.add_cell(rid_a, CellResult("mem", {"size": 512}, {}, metrics={"peak_allocated_bytes": 2.0e9, "s_per_image": 1.0}))
    store.add_cell(rid_b, CellResult("mem", {"size": 512}, {}, metrics={"peak_allocated_bytes": 2.4e9, "s_per_image": 1.0}))
    (cell,) = compare_runs(store, rid_a, rid_b, metric="peak_allocated_bytes").cells
    assert cell.verdict == "regression" and cell.p_value is None and cell.test == "none"
    assert "judged on size alone" in cell.note


def test_missing_metric_in_one_run(store: Store) -> None:
    rid_a, rid_b = store.create_run("a", {}, {}), store.create_run("b", {}, {})
    store.add_cell(rid_a, CellResult("s", {"x": 1}, {}, metrics={"s_per_image": 1.0, "mfu": 0.4}))
    store.add_cell(rid_b, CellResult("s", {"x": 1}, {}, metrics={"s_per_image": 1.0, "mfu": math.nan}))
    (cell,) = compare_runs(store, rid_a, rid_b, metric="mfu").cells
    assert cell.verdict == "missing" and cell.note == "mfu missing in B"


def test_bad_arguments_teach(store: Store) -> None:
    a = bench_run(store, seed=16)
    with pytest.raises(ConfigError, match="unknown metric 's_per_imag'") as err:
        compare_runs(store, a, a, metric="s_per_imag")
    assert "did you mean 's_per_image'" in str(err.value) and "images_per_s" in str(err.value)
    with pytest.raises(ConfigError, match="threshold must be >= 0"):
        compare_runs(store, a, a, threshold=-0.1)
    with pytest.raises(ConfigError, match="alpha must be between 0 and 1"):
        compare_runs(store, a, a, alpha=1.5)


def test_direction_table_and_inference() -> None:
    assert direction_of("s_per_image") == "lower" and direction_of("images_per_s") == "higher"
    assert direction_of("unet_s") == "lower" and direction_of("tokens_per_s") == "higher"
    assert direction_of("workspace_bytes") == "lower"
    with pytest.raises(ConfigError, match="higher or lower 'aesthetic'") as err:
        direction_of("aesthetic")
    assert "direction=" in (err.value.hint or "")


def test_custom_direction_and_sample(store: Store) -> None:
    rid_a, rid_b = store.create_run("a", {}, {}), store.create_run("b", {}, {})
    for rid, score in ((rid_a, [0.30, 0.31, 0.29, 0.30, 0.31]), (rid_b, [0.20, 0.21, 0.19, 0.20, 0.21])):
        store.add_cell(rid, CellResult("q", {"x": 1}, {}, metrics={"aesthetic": float(np.median(score))}, samples={"aesthetic": score}))
    (cell,) = compare_runs(store, rid_a, rid_b, metric="aesthetic", direction="higher").cells
    assert cell.verdict == "regression" and cell.test == "welch-log calls" and cell.n_a == 5  # sample named like the metric


def test_significance_choices() -> None:
    assert min_mannwhitney_p(3, 3) == pytest.approx(0.1)  # why 3 vs 3 cannot use Mann-Whitney at 5%
    assert min_mannwhitney_p(4, 4) == pytest.approx(2 / 70)
    p, test = significance([1.0, 1.01, 0.99], [1.3, 1.31, 1.29])
    assert test == "welch-log" and p is not None and p < 0.001
    p, test = significance([1.0, 1.01, 0.99, 1.02], [1.3, 1.31, 1.29, 1.32])
    assert test == "mann-whitney" and p == pytest.approx(2 / 70)
    p, test = significance([1.0, 1.01, 0.99], [1.3, 1.31, 1.29], alpha=0.2)  # MW can reach 0.2 at 3 vs 3
    assert test == "mann-whitney" and p == pytest.approx(0.1)
    assert significance([1.0, 1.0], [1.0, 1.0]) == (1.0, "constant")
    assert significance([1.0, 1.0], [2.0, 2.0]) == (0.0, "constant")
    assert significance([1.0], [2.0, 2.1]) == (None, "none")
    assert significance([-1.0, 0.0, 1.0], [5.0, 6.0, 7.0])[1] == "welch"  # no logs of non-positive values


def test_to_dict_is_json(store: Store) -> None:
    a = bench_run(store, 1.0, seed=17, schedulers=("euler", "ddim"))
    b = bench_run(store, 1.3, seed=18, schedulers=("euler", "dpm++"))
    data = json.loads(json.dumps(compare_runs(store, a, b).to_dict()))
    assert data["has_regression"] is True and data["run_a"] == a and data["run_b"] == b
    assert data["cells"][0]["verdict"] == "regression" and data["cells"][0]["labels"] == {"scheduler": "euler"}
    assert data["only_a"][0]["labels"] == {"scheduler": "ddim"} and data["only_b"][0]["labels"] == {"scheduler": "dpm++"}
    assert data["summary"].startswith("1 regression;")


def _text(table: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(table)
    return buf.getvalue()


def test_tables_render(store: Store) -> None:
    env = {"cpu": {"model": "AMD EPYC", "usable_cores": 2}, "torch": {"version": "2.13.0"}}
    a = bench_run(store, 1.0, seed=19, environment=env)
    b = bench_run(store, 1.3, seed=20, environment={**env, "torch": {"version": "2.14.0"}})
    text = _text(comparison_table(compare_runs(store, a, b)))
    assert f"run {b} vs run {a} (baseline)" in text and "lower is better" in text
    assert text.count("regression") == 4  # three rows and the caption
    assert "+3" in text and "environment differs in 1 field" in text
    store.add_cell(b, CellResult("odd", {"prompt": "[bold]x[/]"}, {}, status="failed", error="ValueError: [bad] input"))
    text = _text(comparison_table(compare_runs(store, a, b)))
    assert "only in B: odd prompt=[bold]x[/]" in text  # user text is shown, not read as markup
    cells = _text(cells_table(store.get_run(b)))
    assert "[bold]x[/]" in cells and "ValueError: [bad] input" in cells

    runs = _text(runs_table(store.list_runs()))
    assert "AMD EPYC (2 cores), torch 2.14.0" in runs and "finished" in runs and "diffprof bench" in runs
    assert "no runs yet" in _text(runs_table([]))
    cells = _text(cells_table(store.get_run(b), metrics=["s_per_image", "peak_allocated_bytes"]))
    assert "euler" in cells and "1.86 GiB" in cells and "ok" in cells


def test_compare_values_use_the_one_formatter(store: Store) -> None:
    """The A and B columns print as the reports do (images/s is a bare number under its header)."""
    assert format_metric("s_per_image", 1.234) == "1.23 s"
    assert format_metric("peak_allocated_bytes", 3 * 2**30) == "3 GiB"
    assert format_metric("images_per_s", 2.5) == "2.5"
    assert format_metric("mfu", 0.42) == "42.0%"
    assert format_metric("s_per_image", None) == "-" and format_metric("s_per_image", math.nan) == "-"
    a = bench_run(store, 1.0, seed=21)
    b = bench_run(store, 1.3, seed=22)
    cmp = compare_runs(store, a, b, metric="images_per_s")
    text = _text(comparison_table(cmp))
    assert all(format_metric("images_per_s", c.mean_a) in text and format_metric("images_per_s", c.mean_b) in text for c in cmp.cells)


def test_compare_needs_no_store(store: Store) -> None:
    """The comparison is a function of two runs: runs read from a JSON report compare the same."""
    a = store.get_run(bench_run(store, 1.0, seed=23))
    b = store.get_run(bench_run(store, 1.3, seed=24))
    plain = compare(a, b)
    assert plain.to_dict() == compare_runs(store, a.id, b.id).to_dict()
    assert [c.verdict for c in plain.cells] == ["regression"] * 3


def test_a_registered_metric_absent_from_both_runs_is_named(store: Store) -> None:
    a = bench_run(store, seed=25)
    with pytest.raises(ConfigError, match="neither run has the metric 'mfu'") as err:
        compare_runs(store, a, a, metric="mfu")
    assert "s_per_image" in (err.value.hint or "")


# ----------------------------------------------------------------------------- the noise floor from a store's history
QUIET = {"cpus": 2, "wall_s": 10.0, "own_cpu_s": 10.0, "others_cpu_s": 0.5, "steal_s": 0.0, "spans": []}


def rounds_run(store: Store, factor: float, seed: int, name: str | None = None) -> int:
    """One euler cell measured in 3 rounds that agree to 0.2%, on a quiet host, as the runner stores it."""
    rounds = (BASE["euler"] * factor * np.random.default_rng(seed).lognormal(0.0, 0.002, 3)).tolist()
    rid = store.create_run("diffprof bench", {"rounds": 3}, {"torch": {"version": "2.13.0"}}, name=name)
    store.add_cell(rid, CellResult("schedulers", {"scheduler": "euler"}, {"scheduler": "euler", "rounds": 3},
                                   metrics={"s_per_image": float(np.median(rounds))}, samples={"call_s": rounds}, rounds={"s_per_image": rounds}))
    store.set_machine(rid, QUIET)
    store.finish_run(rid)
    return rid


def test_the_noise_floor_comes_from_the_baselines_store(store: Store, tmp_path) -> None:
    """History is read on either backend, and with the baseline in another store (compare
    --baseline-db) it comes from the baseline's: there, earlier runs scatter by 10%, so a 9% change
    whose rounds agree to 0.2% is too noisy to believe, within the store and across stores alike,
    whether or not B was pushed there too. The runner's own store, whose earlier runs agree
    closely, makes it a regression: which store supplies the floor decides the verdict."""
    for i, factor in enumerate((1.0, 1.12, 0.9, 1.05)):
        rounds_run(store, factor, seed=10 + i)
    a = rounds_run(store, 1.0, seed=20, name="main")
    with Store(tmp_path / "runner.db") as runner:
        for i in range(4):
            rounds_run(runner, 1.0, seed=30 + i)  # this runner's history: the old code, tight
        b = rounds_run(runner, 1.09, seed=21)
        alone = compare_runs(runner, "main", b, baseline=store, history=False)
        across = compare_runs(runner, "main", b, baseline=store)
        store.copy_to(runner, a)  # the baseline pulled onto the runner: there its history is the runner's own
        runner_floor = compare_runs(runner, "main", b)
        runner.copy_to(store, b)  # pushed: now in the shared store too, under another id
        pushed = compare_runs(runner, "main", b, baseline=store)
    within = compare_runs(store, a, "latest")
    assert [c.verdict for c in alone.cells] == ["regression"] and alone.cells[0].history_runs == 0
    assert [c.verdict for c in runner_floor.cells] == ["regression"] and runner_floor.cells[0].history_runs >= 3
    for cmp in (across, pushed, within):
        (cell,) = cmp.cells
        assert cell.verdict == "too noisy" and cell.history_runs == 5 and "history floor" in cell.test, cmp
    assert [(c.p_value, c.low, c.high) for c in across.cells] == [(c.p_value, c.low, c.high) for c in pushed.cells]
    assert [(c.p_value, c.low, c.high) for c in within.cells][0] == pytest.approx([(c.p_value, c.low, c.high) for c in across.cells][0])
    assert [r.id for r in store.history([store.get_run(a).cells[0].key], before=a, limit=2)] == [a - 1, a - 2]  # newest first, bounded
