"""Results a team shares: copying runs between stores (push/pull) with everything a run holds
(cells, metrics, samples, per-round values, artifacts, machine state, its owner), a previous
release's store pushed into PostgreSQL and compared across backends, and exports read by pandas and
duckdb.

Every copy runs between real stores: SQLite files and schemas of the session's PostgreSQL server.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from diffprof.analysis.compare import compare
from diffprof.cli import main
from diffprof.errors import StoreError
from diffprof.results import CellResult
from diffprof.store import Store
from rawdb import count, query

DATA = Path(__file__).parent / "data"
MACHINE = {"cpus": 2, "wall_s": 10.0, "own_cpu_s": 9.0, "others_cpu_s": 0.4, "steal_s": 0.0, "before": {"loadavg": [0.1, 0.1, 0.1]},
           "after": {"loadavg": [0.9, 0.3, 0.1]}, "spans": [{"round": 1, "wall_s": 5.0, "others_cpu_s": 0.2}]}
BUSY = {**MACHINE, "others_cpu_s": 9.5}


def cell(i: int, status: str = "ok", factor: float = 1.0) -> CellResult:
    return CellResult(
        suite="schedulers",
        labels={"scheduler": f"s{i}"},
        settings={"scheduler": f"s{i}", "steps": 2, "size": [32, 32]},
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "RuntimeError: CUDA out of memory\nTraceback ...",
        metrics={"s_per_image": 0.1 * (i + 1) * factor, "mfu": math.nan},
        samples={"call_s": [0.1 * (i + 1) * factor + 0.001 * k for k in range(4)], "step_s": [0.02, 0.021]},
        rounds={"s_per_image": [0.1 * (i + 1) * factor + 0.002 * k for k in range(3)], "peak_allocated_bytes": [2e9, 2e9, 2.1e9]},
        artifacts={"image.png": bytes(range(256)) * (i + 1), "timeline.json": b'{"steps": [1, 2]}'},
        started_at="2026-11-26T10:00:00+00:00",
        finished_at=f"2026-11-26T10:00:0{i}+00:00",
    )


@pytest.fixture
def new_store(tmp_path: Path, request: pytest.FixtureRequest):
    """``new_store("sqlite")`` / ``new_store("postgresql")``: the URL of a fresh, empty store."""
    made = iter(range(1000))

    def make(kind: str) -> str:
        if kind == "sqlite":
            return str(tmp_path / f"store{next(made)}.db")
        return request.getfixturevalue("pg_server").create_store()

    return make


PAIRS = [("sqlite", "postgresql"), ("postgresql", "sqlite"), ("postgresql", "postgresql")]


def _same_cells(a: list[CellResult], b: list[CellResult]) -> None:
    assert [c.key for c in a] == [c.key for c in b]
    for x, y in zip(a, b):
        assert (x.suite, x.labels, x.settings, x.status, x.error, x.started_at, x.finished_at) == (
            y.suite, y.labels, y.settings, y.status, y.error, y.started_at, y.finished_at)  # fmt: skip
        assert list(x.metrics) == list(y.metrics) and all(
            (math.isnan(v) and math.isnan(y.metrics[k])) or v == y.metrics[k] for k, v in x.metrics.items())
        assert x.samples == y.samples and x.rounds == y.rounds and x.artifacts == y.artifacts


# ----------------------------------------------------------------------------- copying runs
@pytest.mark.parametrize("source_kind, dest_kind", PAIRS)
def test_a_copied_run_keeps_everything_and_copying_twice_stores_it_once(new_store, source_kind: str, dest_kind: str) -> None:
    src_url, dst_url = new_store(source_kind), new_store(dest_kind)
    with Store(src_url) as src, Store(dst_url) as dst:
        dst.create_run("already here", {}, {})  # so the copy's id differs from the source's
        rid = src.create_run("diffprof bench -s schedulers", {"suites": ["schedulers"]}, {"torch": {"version": "2.13.0"}}, name="main")
        for i, status in enumerate(("ok", "failed", "ok")):
            src.add_cell(rid, cell(i, status))
        src.set_machine(rid, MACHINE)
        src.finish_run(rid)

        first = src.copy_to(dst, "main")
        assert (first.source_id, first.created, first.copied, first.unchanged) == (rid, True, 3, 0)
        assert first.dest_id == 2 and first.describe("a", "b") == f"run {rid} of a -> run 2 of b: 3 cells copied"
        again = src.copy_to(dst, rid)
        assert (again.dest_id, again.created, again.copied, again.unchanged) == (2, False, 0, 3)
        assert "nothing to copy (3 cells)" in again.describe("a", "b")

        original, copy = src.get_run(rid, artifacts=True), dst.get_run("main", artifacts=True)
        assert copy.uid == original.uid == first.uid and copy.id == 2
        assert (copy.name, copy.status, copy.command, copy.config, copy.environment) == (
            "main", "finished", original.command, original.config, original.environment)  # fmt: skip
        assert (copy.created_at, copy.finished_at, copy.counts) == (original.created_at, original.finished_at, {"ok": 2, "failed": 1})
        assert copy.machine == original.machine == MACHINE and dst.machine(2) == MACHINE
        _same_cells(original.cells, copy.cells)
        assert copy.cells[0].rounds["s_per_image"] == pytest.approx([0.1, 0.102, 0.104])
        assert dst.finished_keys(2) == src.finished_keys(rid)
        assert dst.integrity_problems() == [] and src.integrity_problems() == []
    assert [r[0] for r in query(dst_url, "SELECT COUNT(*) FROM runs WHERE uid = ?", (first.uid,))] == [1]
    assert count(dst_url, "cells") == 3 and count(dst_url, "artifacts") == 6 and count(dst_url, "rounds") == 6
    owner = "SELECT host, pid, started FROM runs WHERE uid = ?"
    assert query(dst_url, owner, (first.uid,)) == query(src_url, owner, (first.uid,))  # the owner travels: host, pid, start time


@pytest.mark.parametrize("source_kind, dest_kind", PAIRS[:2])
def test_copying_again_after_a_resume_brings_the_new_cells_and_status(new_store, source_kind: str, dest_kind: str) -> None:
    src_url, dst_url = new_store(source_kind), new_store(dest_kind)
    with Store(src_url) as src, Store(dst_url) as dst:
        rid = src.create_run("bench", {}, {})
        src.add_cell(rid, cell(0))
        src.add_cell(rid, cell(1, "failed"))
        src.finish_run(rid, "interrupted")
        assert src.copy_to(dst, rid).copied == 2
        src.resume_run(rid)  # the failed cell is retried and one more is measured
        retried = cell(1)
        retried.finished_at = "2026-11-26T11:00:00+00:00"
        src.add_cell(rid, retried)
        src.add_cell(rid, cell(2))
        src.finish_run(rid)
        done = src.copy_to(dst, rid)
        assert (done.created, done.copied, done.unchanged) == (False, 2, 1)
        copy = dst.get_run(done.dest_id, artifacts=True)
        assert copy.status == "finished" and copy.counts == {"ok": 3}
        assert sorted(c.labels["scheduler"] for c in copy.cells) == ["s0", "s1", "s2"]
        _same_cells(sorted(src.get_run(rid, artifacts=True).cells, key=lambda c: c.key), sorted(copy.cells, key=lambda c: c.key))
        assert dst.integrity_problems() == []


def test_a_running_run_whose_owner_is_gone_is_copied_as_interrupted(new_store) -> None:
    """Its pid ended, or now belongs to another process (a start time that differs): copied as
    interrupted, since no other host could tell. A run whose owner still measures stays running."""
    src_url, dst_url = new_store("sqlite"), new_store("postgresql")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Store(src_url) as src, Store(dst_url) as dst:
        killed, reused, live = (src.create_run(what, {}, {}) for what in ("killed", "reused pid", "live"))
        for rid in (killed, reused, live):
            src.add_cell(rid, cell(0))
        query(src_url, "UPDATE runs SET pid = ? WHERE id = ?", (gone.pid, killed))  # its writer was killed
        query(src_url, "UPDATE runs SET started = started - 3600 WHERE id = ?", (reused,))  # our pid, but an hour older: another process
        assert [src.get_run(r).status for r in (killed, reused, live)] == ["interrupted", "interrupted", "running"]
        for rid in (killed, reused, live):
            src.copy_to(dst, rid)
    assert query(dst_url, "SELECT command, status FROM runs ORDER BY id") == [
        ("killed", "interrupted"), ("reused pid", "interrupted"), ("live", "running")]  # stored so: no other host can check those pids


def test_copying_into_the_same_store_is_refused(new_store) -> None:
    url = new_store("postgresql")
    with Store(url) as a, Store(url) as b:
        rid = a.create_run("bench", {}, {})
        with pytest.raises(StoreError, match="both the source and the destination"):
            a.copy_to(b, rid)


def test_push_and_pull_on_the_command_line(new_store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local, shared = tmp_path / "local.db", new_store("postgresql")
    shutil.copyfile(DATA / "store-v1.db", local)
    assert main(["push", "baseline", "latest", "--db", str(local), "--to", shared]) == 0
    out = capsys.readouterr().out
    assert "run 1 of " in out and "-> run 1 of postgresql://" in out and "run 2 of " in out and out.count("2 cells copied") == 2
    assert main(["push", "1", "2", "--db", str(local), "--to", shared]) == 0  # again: nothing new
    assert capsys.readouterr().out.count("nothing to copy (2 cells)") == 2
    # a typo anywhere copies nothing
    assert main(["push", "1", "baselin", "--db", str(local), "--to", new_store("sqlite")]) == 2
    assert "no run named 'baselin'" in capsys.readouterr().err

    elsewhere = tmp_path / "laptop.db"  # pull onto another machine's store, created on first use
    assert main(["pull", "baseline", "--from", shared, "--db", str(elsewhere)]) == 0
    assert "-> run 1 of " in capsys.readouterr().out
    with Store(local) as a, Store(elsewhere) as b:
        _same_cells(a.get_run("baseline", artifacts=True).cells, b.get_run("baseline", artifacts=True).cells)
        assert b.get_run("baseline").uid == a.get_run("baseline").uid
    assert main(["pull", "latest", "--from", str(tmp_path / "missing.db"), "--db", str(elsewhere)]) == 2
    assert "no results store" in capsys.readouterr().err


# ------------------------------------------------------------- a previous release's store, shared
def _junit_cases(xml: str) -> list[tuple[str, str | None]]:
    root = ET.fromstring(xml)
    return [(case.get("name", ""), next((child.get("type") or child.tag for child in case if child.tag in ("failure", "skipped")), None))
            for case in root.iter("testcase")]


def test_an_old_store_pushed_into_postgresql_compares_the_same_across_backends(new_store, tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """store-v1.db (schema 1, written by an older main) opens, takes a candidate run that is 10x
    slower in one cell, is pushed into PostgreSQL, and `compare` gives the same verdicts within
    SQLite, within PostgreSQL, and with the baseline in one backend and the candidate in the other
    (the gate's verdicts: a believed regression, and a cell too noisy to judge on 2 calls)."""
    local, shared = tmp_path / "store-v1.db", new_store("postgresql")
    shutil.copyfile(DATA / "store-v1.db", local)
    with Store(local) as store:
        base = store.get_run("baseline")
        candidate = store.create_run("diffprof bench (candidate)", base.config, base.environment, name="candidate")
        for old in base.cells:
            factor = 10.0 if old.labels["scheduler"] == "euler" else 1.0  # its 2 repeats scatter by ±36%: a slowdown beyond that
            old.metrics = {k: v * factor if k == "s_per_image" else v for k, v in old.metrics.items()}
            old.samples = {k: [x * factor for x in v] if k == "call_s" else v for k, v in old.samples.items()}
            store.add_cell(candidate, old)
        store.finish_run(candidate)
    assert main(["push", "baseline", "candidate", "--db", str(local), "--to", shared]) == 0
    capsys.readouterr()

    verdicts = {}
    for where, args in {
        "sqlite": ["--db", str(local)],
        "postgresql": ["--db", shared],
        "baseline in postgresql": ["--baseline-db", shared, "--db", str(local)],
        "baseline in sqlite": ["--baseline-db", str(local), "--db", shared],
    }.items():
        assert main(["compare", "baseline", "candidate", *args, "--format", "junit"]) == 1, where  # exit 1: a regression
        verdicts[where] = _junit_cases(capsys.readouterr().out)
    assert verdicts["sqlite"] == [("scheduler=euler", "regression"), ("scheduler=ddim", "too noisy")]
    assert all(v == verdicts["sqlite"] for v in verdicts.values()), verdicts
    with Store(local) as a, Store(shared) as b:
        within = compare(a.get_run("baseline"), a.get_run("candidate"))
        across = compare(b.get_run("baseline"), a.get_run("candidate"))
    assert [(c.verdict, c.p_value, c.ratio) for c in within.cells] == [(c.verdict, c.p_value, c.ratio) for c in across.cells]
    assert within.cells[0].ratio == pytest.approx(10.0)


# ----------------------------------------------------------------------------- exports
def _two_runs(url: str) -> list[int]:
    with Store(url) as store:
        a = store.create_run("bench", {}, {}, name="before")
        for i in range(2):
            store.add_cell(a, cell(i))
        b = store.create_run("bench", {}, {})
        odd = cell(5, "failed")
        odd.suite, odd.labels, odd.metrics = "resolutions", {"width": 64, "height": 64}, {}
        store.add_cell(b, cell(0, factor=2.0))
        store.add_cell(b, odd)
        store.set_machine(a, MACHINE)
        store.set_machine(b, BUSY)
        return [a, b]


def test_export_cells_samples_and_rounds_read_back_with_pandas_and_duckdb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    duckdb = pytest.importorskip("duckdb")
    db = str(tmp_path / "r.db")
    a, b = _two_runs(db)
    files = {}
    for fmt in ("csv", "parquet"):
        for rows in ("cell", "sample", "round"):
            files[fmt, rows] = tmp_path / f"{rows}.{fmt}"
            assert main(["export", str(a), "latest", "--db", db, "--rows", rows, "--out", str(files[fmt, rows])]) == 0
    out = capsys.readouterr().out
    assert "4 cell rows of 2 run(s)" in out and "24 sample rows of 2 run(s)" in out and "24 round rows of 2 run(s)" in out

    with Store(db) as store:
        uids = {r.id: r.uid for r in store.list_runs()}
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        cells = read(files[fmt, "cell"])
        assert list(cells.columns[:7]) == ["run_id", "run_uid", "run_name", "run_created_at", "run_host_busy", "cell_id", "suite"]
        assert cells["run_host_busy"].tolist() == [False, False, True, True] and cells["round_count"].tolist() == [3, 3, 3, 3]
        assert json.loads(cells["run_machine"].tolist()[0]) == MACHINE
        assert cells["run_id"].tolist() == [a, a, b, b] and cells["run_uid"].tolist() == [uids[a]] * 2 + [uids[b]] * 2
        assert cells["scheduler"].tolist()[:3] == ["s0", "s1", "s0"] and cells["width"].tolist()[3] == 64
        assert cells["s_per_image"].tolist()[:3] == pytest.approx([0.1, 0.2, 0.2]) and math.isnan(cells["s_per_image"].tolist()[3])
        assert cells["status"].tolist() == ["ok", "ok", "ok", "failed"]
        samples = read(files[fmt, "sample"])
        assert list(samples.columns) == ["run_id", "run_uid", "run_name", "run_created_at", "run_host_busy", "cell_id", "suite", "scheduler",
                                         "width", "height", "status", "sample", "index", "value"]
        call = samples[(samples["run_id"] == a) & (samples["scheduler"] == "s1") & (samples["sample"] == "call_s")]
        assert call["index"].tolist() == [0, 1, 2, 3] and call["value"].tolist() == pytest.approx([0.2, 0.201, 0.202, 0.203])
        rounds = read(files[fmt, "round"])
        assert list(rounds.columns) == ["run_id", "run_uid", "run_name", "run_created_at", "run_host_busy", "cell_id", "suite", "scheduler",
                                        "width", "height", "status", "metric", "round", "value"]
        per_round = rounds[(rounds["run_id"] == a) & (rounds["scheduler"] == "s1") & (rounds["metric"] == "s_per_image")]
        assert per_round["round"].tolist() == [1, 2, 3] and per_round["value"].tolist() == pytest.approx([0.2, 0.202, 0.204])
    con = duckdb.connect()
    medians = con.execute(
        f"SELECT run_id, scheduler, median(value) FROM '{files['parquet', 'sample']}' WHERE sample = 'call_s' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert medians == [(a, "s0", pytest.approx(0.1015)), (a, "s1", pytest.approx(0.2015)), (b, "s0", pytest.approx(0.2015)), (b, None, pytest.approx(0.6015))]  # the resolutions cell has no scheduler
    assert con.execute(f"SELECT count(*) FROM read_csv_auto('{files['csv', 'cell']}')").fetchone() == (4,)
    busy = con.execute(f"SELECT run_host_busy, max(value) FROM '{files['parquet', 'round']}' WHERE metric = 's_per_image' GROUP BY ALL ORDER BY ALL")
    assert busy.fetchall() == [(False, pytest.approx(0.204)), (True, pytest.approx(0.604))]  # the busy run: filter it out in one line


def test_export_mixed_label_types_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from diffprof.report.export import write_export

    db = str(tmp_path / "r.db")
    with Store(db) as store:
        rid = store.create_run("bench", {}, {})
        for value in (1, "auto", [1, 2]):  # one label: a number, text, a list
            c = cell(0)
            c.labels = {"scheduler": value}
            store.add_cell(rid, c)
        run = store.get_run(rid)
    write_export([run], tmp_path / "x.parquet", "parquet", "cell")
    assert pq.read_table(tmp_path / "x.parquet").column("scheduler").to_pylist() == ["1", "auto", "[1, 2]"]
    assert main(["export", "latest", "--db", db, "-o", "-"]) == 0  # csv on standard output
    assert capsys.readouterr().out.splitlines()[0].startswith("run_id,run_uid,run_name")
    assert main(["export", "latest", "--db", db, "--format", "xlsx"]) == 2
    assert "unknown export format 'xlsx'" in capsys.readouterr().err
    assert main(["export", "latest", "--db", db, "--format", "parquet", "-o", "-"]) == 2
    assert "cannot go to standard output" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["export", "latest", "--db", db, "-o", str(tmp_path / "y.parquet")]) == 2
    assert "pip install 'diffprof[parquet]'" in capsys.readouterr().err
