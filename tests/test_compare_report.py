"""`diffprof compare` and `diffprof history` output: every comparison format, the exit codes, old
stores, noise floors from the store, and change points across runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from diffprof.analysis.history import history
from diffprof.analysis.steps import detect_steps, segments
from diffprof.cli import main
from diffprof.config.location import parse_location
from diffprof.report.comparison import COMPARISON_RENDERERS, get_comparison_renderer
from diffprof.results import CellResult
from diffprof.store import Store
from diffprof.store import schema as store_schema
from diffprof.store.compare import compare_runs
from diffprof.store.sqlite import open_sqlite

ENV = {"torch": {"version": "2.13.0"}, "hostname": "box"}
QUIET = {"cpus": 2, "wall_s": 10.0, "own_cpu_s": 10.0, "others_cpu_s": 0.5, "steal_s": 0.0, "before": {"loadavg": [0.1, 0.1, 0.1]},
         "after": {"loadavg": [0.9, 0.3, 0.1]}, "spans": []}
BUSY = {**QUIET, "others_cpu_s": 9.0}
BASES = {"ddim": 0.10, "euler": 0.12, "pndm <b>": 0.09}


def add_run(store: Store, factor: float = 1.0, seed: int = 0, machine: dict | None = None, noise: float = 0.01, name: str | None = None,
            env: dict | None = None, factors: dict[str, float] | None = None) -> int:
    """A 3-cell run measured in 3 rounds, as the runner stores it."""
    rng = np.random.default_rng(seed)
    rid = store.create_run("diffprof bench -s schedulers", {"rounds": 3}, env or ENV, name=name)
    for scheduler, base in BASES.items():
        rounds = (base * factor * (factors or {}).get(scheduler, 1.0) * rng.lognormal(0, noise, 3)).tolist()
        store.add_cell(rid, CellResult("schedulers", {"scheduler": scheduler}, {"scheduler": scheduler, "steps": 8, "rounds": 3},
                                       metrics={"s_per_image": float(np.median(rounds)), "images_per_s": 1 / float(np.median(rounds))},
                                       samples={"call_s": rounds}, rounds={"s_per_image": rounds, "images_per_s": [1 / r for r in rounds]}))
    store.set_machine(rid, machine if machine is not None else QUIET)
    store.finish_run(rid)
    return rid


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "c.db"


def test_every_format_renders_the_same_cells(db: Path) -> None:
    with Store(db) as store:
        a, b = add_run(store, 1.0, seed=1, name="base"), add_run(store, 1.25, seed=2, machine=BUSY)
        comparison = compare_runs(store, a, b)
    assert set(COMPARISON_RENDERERS) >= {"console", "markdown", "json", "html"}
    assert [c.verdict for c in comparison.cells] == ["host busy"] * 3 and not comparison.has_regression
    texts = {name: get_comparison_renderer(name).render(comparison) for name in COMPARISON_RENDERERS}
    for name, text in texts.items():
        assert "host busy" in text and "pndm" in text, name
    data = json.loads(texts["json"])
    assert data["format"] == "diffprof-comparison" and data["version"] == 1
    assert {"run_a", "run_b", "name_a", "metric", "direction", "threshold", "alpha", "correction", "has_regression", "summary", "warnings",
            "cells", "only_a", "only_b", "environment_changes", "machine", "machine_changes"} <= set(data)
    cell = data["cells"][0]
    assert {"verdict", "ratio", "change", "low", "high", "p_value", "p_adjusted", "evidence", "rounds_needed", "values_a", "values_b", "note"} <= set(cell)
    assert cell["evidence"] == "rounds" and cell["low"] < cell["ratio"] < cell["high"] and data["name_a"] == "base"
    assert data["machine"]["load_b"]["busy"] is True and any("host busy during the run" in w for w in data["warnings"])
    md = texts["markdown"]
    assert "| suite | cell | A | B | change | interval | p (adj.) | n | verdict | note |" in md and "pndm &lt;b&gt;" in md
    assert "## Machine state" in md and "yes (other processes took 0.90 of 2 cores" in md
    console = texts["console"]
    assert "run 2 vs run 1 (baseline)" in console and "Benjamini-Hochberg over 3 cells" in console


def test_the_html_is_self_contained_with_intervals_and_the_machine_diff(db: Path) -> None:
    with Store(db) as store:
        a, b = add_run(store, 1.0, seed=3), add_run(store, 1.25, seed=4, env={**ENV, "torch": {"version": "2.14.0"}})
        html = get_comparison_renderer("html").render(compare_runs(store, a, b))
    assert "<script" not in html.lower() and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in html and html.count("<svg") == 3 and html.count('data-verdict="regression"') == 3
    assert "▲ regression" in html and "pndm &lt;b&gt;" in html  # user text escaped
    assert 'id="machine"' in html and 'id="environment"' in html and "2.13.0" in html and "2.14.0" in html


def test_compare_exit_codes_and_formats(db: Path, tmp_path: Path, capsys) -> None:
    with Store(db) as store:
        a, slower, same, busy = add_run(store, seed=5), add_run(store, 1.3, seed=6), add_run(store, 1.0, seed=7), add_run(store, 1.3, seed=8, machine=BUSY)
    assert main(["compare", str(a), str(slower), "--db", str(db), "--format", "json"]) == 1  # a believed regression
    data = json.loads(capsys.readouterr().out)
    assert data["has_regression"] and [c["verdict"] for c in data["cells"]] == ["regression"] * 3
    assert main(["compare", str(a), str(same), "--db", str(db)]) == 0
    assert "3 same" in capsys.readouterr().out
    # (--no-history: the slower run before it would make a noise floor of 30%)
    assert main(["compare", str(a), str(busy), "--db", str(db), "-f", "markdown", "--no-history"]) == 0  # measured on a busy host: not believed
    assert "3 host busy" in capsys.readouterr().out
    out = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(slower), "--db", str(db), "-f", "html", "-o", str(out)]) == 1 and out.read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()
    assert main(["compare", str(a), str(slower), "--db", str(db), "-f", "junk"]) == 2
    assert "unknown comparison format 'junk'" in capsys.readouterr().err
    assert main(["compare", str(a), str(slower), "--db", str(db), "--correction", "bonferroni"]) == 2
    assert "unknown correction" in capsys.readouterr().err
    assert main(["compare", str(a), "999", "--db", str(db)]) == 2


def test_a_newly_failing_cell_fails_the_gate_even_on_a_busy_host(db: Path, capsys) -> None:
    with Store(db) as store:
        a = add_run(store, seed=9)
        b = store.create_run("x", {}, ENV)
        store.add_cell(b, CellResult("schedulers", {"scheduler": "ddim"}, {}, status="failed", error="RuntimeError: boom"))
        store.set_machine(b, BUSY)
    assert main(["compare", str(a), str(b), "--db", str(db)]) == 1
    assert "failed in B: RuntimeError: boom" in capsys.readouterr().out


def test_earlier_runs_in_the_store_are_a_noise_floor(db: Path) -> None:
    with Store(db) as store:
        # runs of one cell scatter 10% between runs, while each run's rounds agree to 0.2%
        history_ids = [add_run(store, f, seed=10 + i, noise=0.002) for i, f in enumerate((1.0, 1.12, 0.9, 1.05))]
        a, b = add_run(store, 1.0, seed=20, noise=0.002), add_run(store, 1.09, seed=21, noise=0.002)
        floored = compare_runs(store, a, b)
        alone = compare_runs(store, a, b, history=False)
        busy_history = [store.set_machine(r, BUSY) for r in history_ids]
        ignored = compare_runs(store, a, b)
    assert [c.verdict for c in alone.cells] == ["regression"] * 3
    assert [c.verdict for c in floored.cells] == ["too noisy"] * 3 and floored.cells[0].history_runs == 5
    assert "--isolate" in floored.cells[0].note and "history floor" in floored.cells[0].test
    assert busy_history and [c.verdict for c in ignored.cells] == ["regression"] * 3  # a busy host's runs make no floor


def test_a_version_1_store_opens_migrates_and_compares(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = open_sqlite(parse_location(path), 5.0)
    store_schema.ensure_schema(conn, str(path), target=1)
    conn.execute("INSERT INTO runs (created_at, status, command, config, environment) VALUES ('2026-11-01T00:00:00+00:00', 'finished', 'old', '{}', '{}')")
    conn.execute("INSERT INTO cells (run_id, cell_key, suite, labels, settings, status) VALUES (1, 'k1', 'schedulers', '{\"scheduler\": \"ddim\"}', '{}', 'ok')")
    conn.execute("INSERT INTO metrics VALUES (1, 's_per_image', 0.1)")
    conn.execute("INSERT INTO samples VALUES (1, 'call_s', '[0.1, 0.101, 0.099]')")
    conn.close()
    with Store(path) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION
        old = store.get_run(1)
        assert old.machine == {} and old.cells[0].rounds == {} and old.cells[0].round_count == 1
        new = store.create_run("new", {}, {})
        store.set_machine(new, QUIET)
        store.add_cell(new, CellResult("schedulers", {"scheduler": "ddim"}, {}, metrics={"s_per_image": 0.13}, samples={"call_s": [0.13, 0.131, 0.129]},
                                       rounds={"s_per_image": [0.13, 0.131, 0.129]}))
        comparison = compare_runs(store, 1, new)
    (cell,) = comparison.cells
    assert cell.verdict == "regression" and cell.evidence == "calls"  # the old side has calls, not rounds
    assert any("stored without rounds" in w for w in comparison.warnings) and any("recorded for run B only" in w for w in comparison.warnings)


def test_steps_are_found_at_the_run_they_start() -> None:
    rng = np.random.default_rng(0)
    series = list(np.r_[np.full(10, 1.0), np.full(8, 1.15)] * rng.lognormal(0, 0.01, 18))
    (step,) = detect_steps(series, 0.05)
    assert step.at == 10 and step.ratio == pytest.approx(1.15, rel=0.02)
    assert detect_steps(list(1.0 * rng.lognormal(0, 0.01, 20)), 0.05) == []  # noise alone: no step
    spike = list(np.r_[[1.0] * 8, [1.6], [1.0] * 8] * rng.lognormal(0, 0.01, 17))  # one spiked run is not a step
    assert detect_steps(spike, 0.05) == []
    small = list(np.r_[np.full(8, 1.0), np.full(8, 1.03)])  # a real 3% step, under a 5% threshold
    assert detect_steps(small, 0.05) == [] and len(detect_steps(small, 0.01)) == 1
    two = list(np.r_[np.full(6, 1.0), np.full(6, 1.2), np.full(6, 0.9)])
    assert [s.at for s in detect_steps(two, 0.05)] == [6, 12]
    assert [(s.start, s.end) for s in segments([1.0, 1.0, 2.0])] == [(0, 3)]  # a last lone point waits for a second


def test_history_marks_the_change_point_in_every_format(db: Path, tmp_path: Path, capsys) -> None:
    with Store(db) as store:
        ids = [add_run(store, 1.0 if i < 5 else 1.2, seed=30 + i, noise=0.005, factors={"euler": 1.0 if i < 5 else 1 / 1.2}) for i in range(9)]
        runs = [store.get_run(i) for i in ids]
    result = history(runs, suite="schedulers")
    ddim = next(c for c in result.cells if c.labels["scheduler"] == "ddim")
    euler = next(c for c in result.cells if c.labels["scheduler"] == "euler")
    assert [runs[s.at].id for s in ddim.steps] == [ids[5]] and euler.steps == []
    assert [(c.labels["scheduler"], runs[s.at].id) for c, s in result.regressions()] == [("ddim", ids[5]), ("pndm <b>", ids[5])]
    assert history(runs, labels={"scheduler": "euler"}).cells[0].label == "scheduler=euler"
    assert main(["history", "-s", "schedulers", "--cell", "scheduler=ddim", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"▲ \+(19|20)\.\d%", out) and "scheduler=ddim at run 6" in out
    page = tmp_path / "h.html"
    assert main(["history", "-s", "schedulers", "--db", str(db), "-f", "html", "-o", str(page)]) == 0
    html = page.read_text()
    assert "<script" not in html and "<svg" in html and "<figcaption>" in html and re.search(r"▲ \+(19|20)\.\d%", html)
    assert main(["history", "-f", "markdown", "--db", str(db), *map(str, ids[3:7])]) == 0
    md = capsys.readouterr().out
    assert md.count("\n| 4 |") + md.count("\n| 5 |") + md.count("\n| 6 |") + md.count("\n| 7 |") == 4
    assert main(["history", "-s", "nosuch", "--db", str(db)]) == 2
    assert "no run among" in capsys.readouterr().err
    assert main(["history", "--cell", "scheduler", "--db", str(db)]) == 2
