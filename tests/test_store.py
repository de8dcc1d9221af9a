"""Results store: round trips, run references, schema versions, crash safety and concurrent writers.

Every test that takes ``store`` or ``store_url`` runs twice, with one body: on an SQLite file and
on a database of the session's real PostgreSQL server (conftest.py). What is in the tables is
checked through sqlite3 / psycopg directly (tests/rawdb.py), not through the code under test.

Crash and concurrency tests run real processes (``python`` on a small writer script) against one
database: SIGKILL mid-run must lose nothing committed, and four writers at once must neither
lose rows nor see "database is locked".
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import diffprof
from diffprof.errors import DiffprofError, StoreError
from diffprof.results import CellResult
from diffprof.store import SCHEMA_VERSION, Store, parse_ref, schema
from diffprof.store.refs import RunRef, id_ranges
from rawdb import columns, count, is_postgres, query

SRC = str(Path(diffprof.__file__).resolve().parents[1])


def make_cell(i: int, status: str = "ok", artifact_size: int = 16) -> CellResult:
    return CellResult(
        suite="schedulers",
        labels={"scheduler": f"s{i}", "steps": 2 + i},
        settings={"model": "tiny-sd", "steps": 2 + i, "size": (64, 64)},
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "RuntimeError: CUDA out of memory\nTraceback ...",
        metrics={"s_per_image": 0.1 * (i + 1), "peak_allocated_bytes": 1024.0 * (i + 1)},
        samples={"call_s": [0.1 * (i + 1) + 0.001 * k for k in range(3)], "step_s": [0.02, 0.021]},
        rounds={"s_per_image": [0.1 * (i + 1) + 0.002 * k for k in range(3)]},
        artifacts={"image.png": bytes([i % 256]) * artifact_size},
        started_at="2026-11-26T10:00:00+00:00",
    )


@pytest.fixture
def store(store_url: str):
    with Store(store_url) as s:
        yield s


# --------------------------------------------------------------------------- round trip
def test_round_trip_run_with_cells(store: Store) -> None:
    env = {"torch": {"version": "2.13.0"}, "gpus": []}
    rid = store.create_run("diffprof bench --suite schedulers", {"suite": "schedulers", "path": Path("/x")}, env, name="baseline")
    ok = make_cell(0)
    ok.metrics["mfu"] = math.nan  # unknown on CPU; SQLite would turn NaN into NULL
    failed = make_cell(1, status="failed")
    ok_id, failed_id = store.add_cell(rid, ok), store.add_cell(rid, failed)
    assert ok_id != failed_id

    run = store.get_run(rid)
    assert (run.id, run.name, run.status, run.finished_at) == (rid, "baseline", "running", None)
    assert run.command == "diffprof bench --suite schedulers"
    assert run.config == {"suite": "schedulers", "path": "/x"}  # non-JSON values kept as str
    assert run.environment == env
    assert run.counts == {"ok": 1, "failed": 1}
    a, b = run.cells
    assert a.id == ok_id and b.id == failed_id
    assert (a.suite, a.labels, a.status, a.error) == ("schedulers", {"scheduler": "s0", "steps": 2}, "ok", None)
    assert list(a.labels) == ["scheduler", "steps"]  # axis order kept for tables
    assert a.settings == {"model": "tiny-sd", "steps": 2, "size": [64, 64]}
    assert a.key == ok.key  # a reloaded cell keeps its resume identity
    assert a.metrics["s_per_image"] == pytest.approx(0.1) and math.isnan(a.metrics["mfu"])
    assert list(a.metrics) == ["s_per_image", "peak_allocated_bytes", "mfu"]
    assert a.samples == ok.samples and a.rounds == ok.rounds and a.round_count == 3
    assert a.started_at == "2026-11-26T10:00:00+00:00" and a.finished_at  # stamped on add
    assert b.status == "failed" and b.error == failed.error and b.metrics == failed.metrics
    assert run.failed_cells == [b]

    # artifacts: not loaded unless asked, fetchable on demand
    assert a.artifacts == {}
    assert store.get_run(rid, artifacts=True).cells[0].artifacts == ok.artifacts
    assert store.artifact_names(ok_id) == ["image.png"]
    assert store.artifact(ok_id, "image.png") == ok.artifacts["image.png"]
    with pytest.raises(StoreError, match=r"no artifact 'timeline\.json'") as err:
        store.artifact(ok_id, "timeline.json")
    assert "image.png" in (err.value.hint or "")

    # the machine state, kept as JSON beside the run
    assert run.machine == {} and store.machine(rid) == {}
    machine = {"cpus": 2, "wall_s": 3.5, "others_cpu_s": 0.25, "spans": [{"round": 1, "wall_s": 1.0}], "gpus": []}
    store.set_machine(rid, machine)
    assert store.machine(rid) == machine and store.get_run(rid).machine == machine

    store.finish_run(rid)
    run = store.get_run("latest")
    assert run.status == "finished" and run.finished_at is not None and run.finished_at >= run.created_at


def test_list_runs_newest_first_with_counts_and_no_cells(store: Store) -> None:
    first = store.create_run("a", {}, {})
    store.add_cell(first, make_cell(0))
    second = store.create_run("b", {}, {}, name="exp")
    for i in range(3):
        store.add_cell(second, make_cell(i, "failed" if i == 2 else "ok"))
    third = store.create_run("c", {}, {})
    runs = store.list_runs()
    assert [r.id for r in runs] == [third, second, first]
    assert [r.counts for r in runs] == [{}, {"ok": 2, "failed": 1}, {"ok": 1}]
    assert all(r.cells == [] for r in runs)
    assert runs[1].name == "exp"
    assert [r.id for r in store.list_runs(limit=2)] == [third, second]
    assert len(store.list_runs(limit=None)) == 3


def test_readding_a_key_replaces_the_earlier_attempt(store: Store) -> None:
    rid = store.create_run("bench", {}, {})
    store.add_cell(rid, make_cell(0))
    store.add_cell(rid, make_cell(1, status="failed"))
    assert store.finished_keys(rid) == {make_cell(0).key}  # the failed cell is retried on resume

    retried = make_cell(1)
    retried.metrics = {"s_per_image": 9.0}
    retried.artifacts = {}
    failed_id = store.get_run(rid).cells[1].id
    new_id = store.add_cell(rid, retried)
    run = store.get_run(rid)
    assert [c.status for c in run.cells] == ["ok", "ok"]
    assert run.cells[1].id == new_id == failed_id and run.cells[1].metrics == {"s_per_image": 9.0}  # same id: it keeps its place
    assert store.add_cell(rid, make_cell(2)) > new_id  # and the next new cell's id is a fresh one (PostgreSQL's identity too)
    assert store.finished_keys(rid) == {make_cell(0).key, make_cell(1).key, make_cell(2).key}
    # the first attempt's metrics, samples and artifacts went with it
    for table, expected in (("cells", 3), ("metrics", 5), ("samples", 6), ("rounds", 3), ("artifacts", 2)):
        assert count(store.location.target, table) == expected, table
    assert store.integrity_problems() == []


def test_same_key_in_two_runs_is_two_cells(store: Store) -> None:
    r1, r2 = store.create_run("a", {}, {}), store.create_run("b", {}, {})
    store.add_cell(r1, make_cell(0))
    store.add_cell(r2, make_cell(0))
    assert len(store.get_run(r1).cells) == 1 and len(store.get_run(r2).cells) == 1


def test_delete_run_removes_everything_it_owns(store: Store) -> None:
    keep = store.create_run("keep", {}, {})
    store.add_cell(keep, make_cell(0))
    gone = store.create_run("gone", {}, {})
    store.add_cell(gone, make_cell(1))
    store.add_cell(gone, make_cell(2))
    assert store.delete_run("latest") == gone
    assert [r.id for r in store.list_runs()] == [keep]
    for table, expected in (("cells", 1), ("metrics", 2), ("samples", 2), ("artifacts", 1)):
        assert count(store.location.target, table) == expected, table
    assert store.integrity_problems() == []
    with pytest.raises(StoreError, match=f"run {gone} not found"):
        store.get_run(gone)


def test_finish_run_statuses_and_resume(store: Store) -> None:
    rid = store.create_run("bench", {}, {})
    store.finish_run(rid, "interrupted")
    assert store.get_run(rid).status == "interrupted"
    assert store.resume_run("latest") == rid
    run = store.get_run(rid)
    assert run.status == "running" and run.finished_at is None
    with pytest.raises(ValueError, match="finish_run status"):
        store.finish_run(rid, "done")  # type: ignore[arg-type]


def test_a_run_interrupted_on_another_host_resumes_here(store: Store) -> None:
    """One shared store, many machines: the run's owner is recorded (host, pid) and a resume
    anywhere that reaches the store takes it over, keeping the cells the other host finished."""
    import socket

    rid = store.create_run("bench", {}, {})
    store.add_cell(rid, make_cell(0))
    store.finish_run(rid, "interrupted")
    url = store.location.target
    query(url, "UPDATE runs SET host = ?, pid = ? WHERE id = ?", ("ci-runner-7", 4242, rid))
    assert store.get_run(rid).status == "interrupted"
    assert store.resume_run(rid) == rid
    assert query(url, "SELECT status, host, pid FROM runs WHERE id = ?", (rid,)) == [("running", socket.gethostname(), os.getpid())]
    assert store.finished_keys(rid) == {make_cell(0).key}
    store.add_cell(rid, make_cell(1))
    store.finish_run(rid)
    assert store.get_run(rid).counts == {"ok": 2}


def test_add_cell_to_unknown_run_and_bad_status(store: Store) -> None:
    with pytest.raises(StoreError, match="run 5 not found"):
        store.add_cell(5, make_cell(0))
    rid = store.create_run("bench", {}, {})
    bad = make_cell(0)
    bad.status = "skipped"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="cell status"):
        store.add_cell(rid, bad)
    assert store.get_run(rid).cells == []


@pytest.mark.parametrize("name", ["", "12", "latest", "latest~1"])
def test_run_names_that_would_read_as_references_are_refused(store: Store, name: str) -> None:
    with pytest.raises(StoreError, match="bad run name"):
        store.create_run("bench", {}, {}, name=name)
    assert store.list_runs() == []


def test_cells_frame_flattens_labels_and_metrics(store: Store) -> None:
    pytest.importorskip("pandas")
    rid = store.create_run("bench", {}, {})
    store.add_cell(rid, make_cell(0))
    odd = make_cell(1, status="failed")
    odd.labels = {"scheduler": "s1", "status": "weird"}  # collides with the status column
    odd.metrics = {"s_per_image": 0.5}
    store.add_cell(rid, odd)
    frame = store.cells_frame("latest")
    assert list(frame.columns) == [
        "run_id", "cell_id", "suite", "scheduler", "steps", "label_status", "status",
        "s_per_image", "peak_allocated_bytes", "s_per_image_iqr", "noisy", "error",
    ]  # fmt: skip
    assert frame["cell_id"].tolist() == [c.id for c in store.get_run("latest").cells]
    assert frame["scheduler"].tolist() == ["s0", "s1"]
    assert frame["status"].tolist() == ["ok", "failed"]
    assert frame["label_status"].tolist()[1] == "weird"
    assert frame["s_per_image"].tolist() == pytest.approx([0.1, 0.5])
    assert frame["peak_allocated_bytes"].tolist()[0] == 1024.0 and math.isnan(frame["peak_allocated_bytes"].tolist()[1])
    assert set(frame["run_id"]) == {rid}
    assert frame["s_per_image_iqr"].tolist()[0] == pytest.approx(0.001)  # IQR of the call_s repeats
    assert frame["noisy"].tolist() == [False, False]


def test_cells_frame_is_the_report_frame(store: Store) -> None:
    """One DataFrame: the store's, the report's and the CSV's columns are the same."""
    pytest.importorskip("pandas")
    import csv
    import io

    from diffprof.report import get_renderer, run_frame

    rid = store.create_run("bench", {}, {})
    for i in range(2):
        store.add_cell(rid, make_cell(i))
    run = store.get_run(rid)
    frame = store.cells_frame(rid)
    assert frame.equals(run_frame(run))
    header = next(csv.reader(io.StringIO(get_renderer("csv").render(run))))
    assert header == list(frame.columns)


def test_cells_frame_without_pandas_says_how_to_install(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = store.create_run("bench", {}, {})
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(DiffprofError, match="needs pandas") as err:
        store.cells_frame(rid)
    assert "pip install" in (err.value.hint or "")


# --------------------------------------------------------------------------- references
def test_refs_latest_ids_and_names(store: Store) -> None:
    ids = [store.create_run(f"r{i}", {}, {}, name="nightly" if i in (0, 2) else None) for i in range(4)]
    assert store.resolve("latest") == ids[3]
    assert store.resolve("latest~1") == ids[2]
    assert store.resolve(" latest~3 ") == ids[0]
    assert store.resolve(ids[1]) == ids[1] and store.resolve(str(ids[1])) == ids[1]
    assert store.resolve("nightly") == ids[2]  # the newest run of that name
    assert store.get_run("latest~1").command == "r2"


def test_unknown_refs_say_what_exists(store: Store) -> None:
    with pytest.raises(StoreError, match="holds no runs yet") as err:
        store.resolve("latest")
    assert "diffprof bench" in (err.value.hint or "")
    for _ in range(7):
        store.create_run("bench", {}, {}, name="baseline")
    store.delete_run(4)
    with pytest.raises(StoreError, match="run 42 not found") as err:
        store.resolve(42)
    assert "runs 1-3, 5-7 exist" in str(err.value) and "latest~1" in str(err.value)
    with pytest.raises(StoreError, match="latest~6 not found") as err:
        store.resolve("latest~6")
    assert "latest~5 (run 1)" in str(err.value)
    with pytest.raises(StoreError, match="no run named 'baselin'") as err:
        store.resolve("baselin")
    assert "did you mean 'baseline'" in str(err.value)
    with pytest.raises(StoreError, match="bad run reference 'latest~x'"):
        store.resolve("latest~x")
    with pytest.raises(StoreError, match="ids start at 1"):
        store.resolve(0)


def test_parse_ref_and_id_ranges() -> None:
    assert parse_ref(3) == RunRef("id", 3) and parse_ref("3") == RunRef("id", 3)
    assert parse_ref("latest") == RunRef("latest", 0) and str(parse_ref("latest~2")) == "latest~2"
    assert parse_ref("exp-1") == RunRef("name", "exp-1")
    for bad in ("", "  ", "latest~", "latest-1", True, 1.5):
        with pytest.raises(StoreError):
            parse_ref(bad)  # type: ignore[arg-type]
    assert id_ranges([7, 1, 2, 3, 5]) == "1-3, 5, 7"
    assert id_ranges([1]) == "1"
    assert id_ranges(list(range(1, 40, 2))) == "1, 3, 5, ..., 35, 37, 39"


# --------------------------------------------------------------------------- schema and files
def test_schema_version(store: Store) -> None:
    url = store.location.target
    assert query(url, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert query(url, "SELECT value FROM meta WHERE key = 'written_by'")[0][0].startswith("diffprof ")
    assert store.schema_version == SCHEMA_VERSION
    assert store.integrity_problems() == []


def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        assert query(store.path, "PRAGMA journal_mode") == [("wal",)]


def test_the_same_tables_on_both_backends(store: Store) -> None:
    """One schema: the columns a migration made are the same in SQLite and PostgreSQL (PostgreSQL
    keeps SQLite's implicit rowid as a column of its own)."""
    url = store.location.target
    extra = ["rowid"] if is_postgres(url) else []
    assert columns(url, "runs") == [
        "id", "created_at", "finished_at", "status", "command", "config", "environment", "name", "host", "pid", "started", "machine", "uid"]
    assert columns(url, "cells") == ["id", "run_id", "cell_key", "suite", "labels", "settings", "status", "error", "started_at", "finished_at"]
    for table, names in (("metrics", ["cell_id", "name", "value"]), ("samples", ["cell_id", "name", "values"]),
                         ("rounds", ["cell_id", "name", "values"]), ("artifacts", ["cell_id", "name", "data"])):
        assert sorted(columns(url, table)) == sorted(extra + names), table


def test_reopening_keeps_data(store_url: str, tmp_path: Path) -> None:
    if not is_postgres(store_url):
        store_url = str(tmp_path / "sub" / "dir" / "r.db")  # parent folders are created
    with Store(store_url) as s:
        rid = s.create_run("bench", {"a": 1}, {})
        s.add_cell(rid, make_cell(0))
    with Store(store_url) as s:
        assert s.get_run(rid).cells[0].metrics["s_per_image"] == pytest.approx(0.1)


def test_newer_schema_is_refused(store_url: str) -> None:
    Store(store_url).close()
    query(store_url, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=f"newer diffprof \\(store schema {SCHEMA_VERSION + 1}") as err:
        Store(store_url)
    assert "upgrade diffprof" in (err.value.hint or "")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, b"name,value\nx,1\n" * 100])
def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "results.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not an SQLite database") as err:
        Store(path)
    assert "--db" in (err.value.hint or "")
    assert path.read_bytes() == content  # untouched


def test_someone_elses_database_is_refused(store_url: str) -> None:
    query(store_url, "CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match=r"(SQLite|PostgreSQL) database but not a diffprof results store"):
        Store(store_url)
    assert columns(store_url, "meta") == []  # nothing was created


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)


def test_older_schema_is_migrated(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(store_url) as s:
        rid = s.create_run("bench", {}, {})
        s.add_cell(rid, make_cell(0))

    def add_tags(conn) -> None:  # written once, in SQLite's dialect, for both backends
        conn.execute("ALTER TABLE runs ADD COLUMN tags TEXT DEFAULT '[]'")
        conn.execute("ALTER TABLE runs ADD COLUMN score REAL")
        conn.execute("UPDATE runs SET score = ?", (1.0 / 3.0,))

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION, add_tags)
    with Store(store_url) as s:
        assert s.schema_version == SCHEMA_VERSION + 1
        assert s.get_run(rid).cells[0].metrics["s_per_image"] == pytest.approx(0.1)
    assert query(store_url, "SELECT tags, score FROM runs") == [("[]", 1.0 / 3.0)]  # REAL is 8 bytes on both


def test_a_version_1_store_migrates_through_every_step(store_url: str) -> None:
    """Every real migration (2: the owner's start time, 3: rounds, machine state and the cell-key
    index, 4: run uids) runs through the Connection on both backends, one step at a time."""
    from diffprof.config.location import parse_location
    from diffprof.store.postgres import open_postgres
    from diffprof.store.sqlite import open_sqlite

    loc = parse_location(store_url)
    conn = open_postgres(loc, 5.0) if is_postgres(store_url) else open_sqlite(loc, 5.0)
    try:
        schema.ensure_schema(conn, loc.shown, target=1)  # what diffprof 0.1 created
        conn.execute("INSERT INTO runs (created_at, status, command, config, environment, name, host, pid) "
                     "VALUES ('2026-11-01T00:00:00+00:00', 'finished', 'diffprof bench', '{}', '{}', 'old', 'box', 7)")
        conn.execute("INSERT INTO cells (run_id, cell_key, suite, labels, settings, status) VALUES (1, 'k1', 'schedulers', '{}', '{}', 'ok')")
        conn.execute("INSERT INTO metrics (cell_id, name, value) VALUES (1, 's_per_image', 0.1)")
        conn.execute("INSERT INTO samples (cell_id, name, \"values\") VALUES (1, 'call_s', '[0.1, 0.101]')")
        for version in (2, 3):
            assert schema.ensure_schema(conn, loc.shown, target=version) == version - 1 and schema.read_version(conn) == version
    finally:
        conn.close()
    assert "started" in columns(store_url, "runs") and "uid" not in columns(store_url, "runs")
    with Store(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        old = store.get_run("old")
        assert old.machine == {} and old.cells[0].rounds == {} and old.cells[0].round_count == 1
        assert old.uid == schema.legacy_uid("2026-11-01T00:00:00+00:00", "box", 7, "diffprof bench")  # the same on either backend
        assert query(store_url, "SELECT started, machine FROM runs") == [(None, None)]
        rid = store.create_run("new", {}, {})
        store.add_cell(rid, make_cell(0))
        store.set_machine(rid, {"cpus": 2})
        assert store.get_run(rid).cells[0].rounds == make_cell(0).rounds and store.machine(rid) == {"cpus": 2}
        assert [r.id for r in store.history(["k1"], before=rid)] == [old.id]
        assert store.integrity_problems() == []
    if is_postgres(store_url):
        indexes = query(store_url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    else:
        indexes = query(store_url, "SELECT name FROM sqlite_master WHERE type = 'index'")
    assert {"cells_key", "runs_uid", "runs_name"} <= {name for (name,) in indexes}


def test_failed_migration_leaves_the_database_as_it_was(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(store_url).close()

    def broken(conn) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN tags TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION, broken)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(store_url)
    monkeypatch.undo()
    with Store(store_url) as s:
        assert s.schema_version == SCHEMA_VERSION
    assert "tags" not in columns(store_url, "runs")


def test_the_integrity_check_finds_orphans_and_broken_keys(store: Store) -> None:
    """The check the concurrency tests rely on can fail: rows written behind the store's back,
    with the database's own foreign key enforcement switched off, are all found."""
    rid = store.create_run("bench", {}, {})
    store.add_cell(rid, make_cell(0))
    assert store.integrity_problems() == []
    url = store.location.target
    behind_its_back = [
        "INSERT INTO metrics (cell_id, name, value) VALUES (999, 'x', 1.0)",
        "INSERT INTO cells (run_id, cell_key, suite, labels, settings, status) VALUES (999, 'k', 's', '{}', '{}', 'ok')",
        "UPDATE runs SET uid = NULL",
    ]
    if is_postgres(url):  # one session in replica mode: PostgreSQL skips its foreign key checks
        _pg_script(url, ["SET session_replication_role = replica", *behind_its_back])
    else:  # a plain sqlite3 connection: foreign keys are off unless switched on
        for sql in behind_its_back:
            query(url, sql)
    problems = store.integrity_problems()
    assert "1 metrics row(s) belong to no cell" in problems and "1 cells row(s) belong to no run" in problems
    assert "1 run(s) without a uid" in problems
    if not is_postgres(url):  # SQLite's own foreign_key_check names them too
        assert any("refers to a missing runs row" in p for p in problems)


def _pg_script(url: str, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_runs_have_a_uid_that_survives_reopening(store: Store) -> None:
    a, b = store.create_run("a", {}, {}), store.create_run("b", {}, {})
    uids = {store.get_run(a).uid, store.get_run(b).uid}
    assert len(uids) == 2 and all(u and len(u) == 36 for u in uids)
    assert {r.uid for r in store.list_runs()} == uids
    with pytest.raises(Exception):  # the uid is unique in the database itself
        query(store.location.target, "UPDATE runs SET uid = (SELECT uid FROM runs WHERE id = ?) WHERE id = ?", (a, b))


# --------------------------------------------------------------------------- real processes
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from diffprof.results import CellResult
    from diffprof.store import Store

    def cell(i, status="ok", size=16):
        return CellResult(
            "schedulers", {"i": i}, {"i": i, "steps": 2}, status=status,
            error=None if status == "ok" else "RuntimeError: out of memory",
            metrics={f"m{k}": float(i * 100 + k) for k in range(20)},
            samples={"call_s": [float(i)] * 5},
            artifacts={"image.png": bytes([i % 256]) * size},
        )

    mode, db = sys.argv[1], sys.argv[2]
    if mode == "sleep":  # three cells (the middle one failed), then hang until killed
        store = Store(db)
        run = store.create_run("bench", {}, {})
        for i in range(3):
            store.add_cell(run, cell(i, "failed" if i == 1 else "ok"))
        print(run, flush=True)
        time.sleep(120)
    elif mode == "hammer":  # write big cells as fast as possible until killed
        store = Store(db)
        run = store.create_run("bench", {}, {})
        i = 0
        while True:
            store.add_cell(run, cell(i, size=200_000))
            i += 1
            if i == 3:
                print(run, flush=True)
    elif mode == "worker":  # open at an agreed moment, then write into our own run and a shared one
        worker, n, start = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        shared = int(sys.argv[6]) if len(sys.argv) > 6 else None
        time.sleep(max(0.0, start - time.time()))
        store = Store(db)
        own = store.create_run(f"worker {worker}", {"worker": worker}, {})
        for i in range(n):
            store.add_cell(own, cell(i))
            if shared is not None:
                store.add_cell(shared, cell(worker * 1000 + i))
        print(own, flush=True)
    """
)


def _spawn(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_loses_no_finished_cell_and_resume_completes_the_run(tmp_path: Path, store_url: str) -> None:
    db = store_url
    proc = _spawn(tmp_path, "sleep", db)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the writer has committed 3 cells and is now hanging
    assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else ""
    run_id = int(line)
    _kill(proc)

    with Store(db) as store:
        run = store.get_run(run_id)
        assert run.status == "interrupted"  # its process is gone, though it never said so
        assert [c.labels["i"] for c in run.cells] == [0, 1, 2]
        assert [c.status for c in run.cells] == ["ok", "failed", "ok"]
        assert run.cells[2].metrics["m19"] == 219.0
        done = store.finished_keys(run_id)
        assert len(done) == 2

        # resume: the remaining cells and the failed one, each exactly once
        assert store.resume_run(run_id) == run_id

        def cell(i: int) -> CellResult:
            return CellResult("schedulers", {"i": i}, {"i": i, "steps": 2}, metrics={"m0": float(i * 100)})

        todo = [cell(i) for i in range(5) if cell(i).key not in done]
        assert [c.labels["i"] for c in todo] == [1, 3, 4]
        for c in todo:
            store.add_cell(run_id, c)
        store.finish_run(run_id)
        run = store.get_run(run_id)
        assert sorted(c.labels["i"] for c in run.cells) == [0, 1, 2, 3, 4]
        assert all(c.ok for c in run.cells) and run.status == "finished"
        assert len(store.finished_keys(run_id)) == 5


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_in_the_middle_of_writes_leaves_only_whole_cells(tmp_path: Path, store_url: str) -> None:
    db = store_url
    proc = _spawn(tmp_path, "hammer", db)
    assert proc.stdout is not None
    run_id = int(proc.stdout.readline())
    time.sleep(0.3)  # it is somewhere inside a transaction most of the time
    _kill(proc)

    if not is_postgres(db):
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
    with Store(db) as store:
        assert store.integrity_problems() == []
        run = store.get_run(run_id, artifacts=True)
        assert len(run.cells) >= 3
        for c in run.cells:  # every stored cell is complete: all or nothing per transaction
            i = c.labels["i"]
            assert c.metrics == {f"m{k}": float(i * 100 + k) for k in range(20)}
            assert c.samples == {"call_s": [float(i)] * 5}
            assert c.artifacts == {"image.png": bytes([i % 256]) * 200_000}
        assert sorted(c.labels["i"] for c in run.cells) == list(range(len(run.cells)))
        # and the store takes new writes
        store.add_cell(run_id, make_cell(0))


def _run_workers(tmp_path: Path, db: str, n: int, shared: int | None) -> list[int]:
    start = time.time() + 1.0  # all four open and write at the same moment
    extra = [str(shared)] if shared is not None else []
    procs = [_spawn(tmp_path, "worker", db, str(w), str(n), str(start), *extra) for w in range(4)]
    own: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Error" not in err, err
        own.append(int(out))
    return own


def test_four_writers_at_once_lose_nothing(tmp_path: Path, store_url: str) -> None:
    db = store_url
    with Store(db) as store:
        shared = store.create_run("shared", {}, {}, name="shared")
    n = 25
    own = _run_workers(tmp_path, db, n, shared)
    with Store(db) as store:
        assert len(set(own)) == 4
        for rid in own:
            run = store.get_run(rid)
            assert sorted(c.labels["i"] for c in run.cells) == list(range(n))
        together = store.get_run(shared)
        assert sorted(c.labels["i"] for c in together.cells) == sorted(w * 1000 + i for w in range(4) for i in range(n))
        assert all(len(c.metrics) == 20 for c in together.cells)
        assert store.integrity_problems() == []


def test_four_processes_creating_a_fresh_store_at_once(tmp_path: Path, store_url: str, request: pytest.FixtureRequest) -> None:
    db = str(tmp_path / "fresh.db")
    if is_postgres(store_url):  # a database that does not exist yet: the first opener creates it
        db = request.getfixturevalue("pg_server").url(f"fresh_{os.getpid()}_{time.time_ns()}")
    own = _run_workers(tmp_path, db, 5, None)
    with Store(db) as store:
        assert sorted(own) == [1, 2, 3, 4]
        assert store.schema_version == SCHEMA_VERSION
        assert [r.counts for r in store.list_runs()] == [{"ok": 5}] * 4
        assert {store.get_run(r).config["worker"] for r in own} == {0, 1, 2, 3}


def test_a_writer_that_never_lets_go_gives_a_clear_error(store_url: str) -> None:
    with Store(store_url) as store:
        rid = store.create_run("bench", {}, {})
    if is_postgres(store_url):  # a transaction that holds the run's row
        import psycopg

        blocker = psycopg.connect(store_url, autocommit=True)
        blocker.execute("BEGIN")
        blocker.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (rid,))
    else:  # one that holds the file's write lock
        blocker = sqlite3.connect(store_url, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    try:
        with Store(store_url, timeout=0.2) as store:
            started = time.perf_counter()
            with pytest.raises(StoreError, match=r"stayed locked by another process for more than 0\.2 s"):
                store.add_cell(rid, make_cell(0))
            assert time.perf_counter() - started >= 0.15  # it waited before giving up
            assert store.get_run(rid).cells == []  # reads are not blocked by the writer
            if is_postgres(store_url):  # nor writers of other runs (SQLite has one writer at a time)
                store.add_cell(store.create_run("other", {}, {}), make_cell(0))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
