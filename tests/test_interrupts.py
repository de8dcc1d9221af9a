"""Interruptions say what was kept and how to go on; a run measured by a live process is not
resumed twice; a dead one is taken over. A few representative signals here (subprocesses cost
seconds each); benchmarks/interrupt_campaign.py sends 30+ at random moments."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

import interrupt_harness as harness
from diffprof.errors import StoreError
from diffprof.interrupts import Interrupted, Kept, signals_interrupt
from diffprof.store import Store
from diffprof.store.owner import Owner, process_start


def _owned_by(store: Store, rid: int, owner: Owner) -> None:
    with closing(sqlite3.connect(store.path)) as conn, conn:
        conn.execute("UPDATE runs SET host = ?, pid = ?, started = ? WHERE id = ?", (owner.host, owner.pid, owner.started, rid))


@pytest.fixture
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        deadline = time.monotonic() + 10
        while process_start(proc.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_run_whose_owner_lives_is_refused_and_a_dead_one_is_taken_over(tmp_path, other_process):
    with Store(tmp_path / "o.db") as store:
        rid = store.create_run("diffprof bench", {}, {})
        me = Owner.current()
        live = Owner(me.host, other_process.pid, process_start(other_process.pid))
        _owned_by(store, rid, live)
        with pytest.raises(StoreError) as info:
            store.resume_run(rid)
        assert f"still being measured by pid {other_process.pid} on {me.host}" in info.value.message and "twice" in info.value.message
        assert "stop that process first" in (info.value.hint or "")
        assert store.get_run(rid).status == "running"
        other_process.kill()
        other_process.wait()
        assert store.get_run(rid).status == "interrupted"  # its owner is gone
        assert store.resume_run(rid) == rid  # taken over
        row = store._conn.execute("SELECT host, pid, started FROM runs WHERE id = ?", (rid,)).fetchone()
        assert Owner(*row) == me


def test_a_reused_pid_is_not_the_owner(tmp_path, other_process):
    """The pid lives, but started later than the run's owner did: the system gave it to another process."""
    with Store(tmp_path / "r.db") as store:
        rid = store.create_run("diffprof bench", {}, {})
        started = process_start(other_process.pid)
        _owned_by(store, rid, Owner(Owner.current().host, other_process.pid, started - 3600))
        assert store.get_run(rid).status == "interrupted"
        assert store.resume_run(rid) == rid


def test_an_owner_on_another_host_is_refused_unless_forced(tmp_path):
    with Store(tmp_path / "h.db") as store:
        rid = store.create_run("diffprof bench", {}, {})
        _owned_by(store, rid, Owner("another-host", 4242, 1.0e9))
        with pytest.raises(StoreError) as info:
            store.resume_run(rid)
        assert "cannot be checked from this host" in info.value.message and "--force" in (info.value.hint or "")
        assert store.resume_run(rid, force=True) == rid


def test_a_finished_run_of_this_process_resumes_and_old_stores_gain_the_start_column(tmp_path):
    from diffprof.store import schema

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.ensure_schema(conn, str(path), target=1)  # a store written before start times were kept
    conn.execute("INSERT INTO runs (created_at, status, command, config, environment, host, pid) VALUES ('t', 'running', 'c', '{}', '{}', 'h', 1)")
    conn.close()
    with Store(path) as store:
        assert store.schema_version == schema.SCHEMA_VERSION == 3
        assert store._conn.execute("SELECT started FROM runs").fetchone() == (None,)
        assert store.get_run(1).status == "running"  # another host's run: shown as stored
        rid = store.create_run("diffprof bench", {}, {})
        store.finish_run(rid)
        assert store.resume_run(rid) == rid


def test_sigterm_raises_an_interruption_that_carries_what_was_kept():
    with signals_interrupt() as caught:
        with pytest.raises(Interrupted) as info:
            signal.raise_signal(signal.SIGTERM)
    assert info.value.exit_code == 143 and caught.last is info.value
    info.value.kept = Kept(3, "x.db", ok=2, failed=1, total=5)
    assert caught.last.kept.stored == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


# ------------------------------------------------------------------ real processes
@pytest.mark.slow
def test_bench_interrupted_says_what_it_kept_and_its_resume_finishes_the_run(tmp_path):
    event = harness.interrupt("bench", signal.SIGINT, tmp_path, after_cells=2)
    assert not event.finished_early and event.code == 130, event.stderr[-2000:]
    assert event.said_what_was_kept, event.stderr
    assert f"--db {tmp_path / 'runs.db'}" in " ".join(event.stderr.split()) and not event.lost
    code, after, out = harness.resume_until_done("bench", tmp_path)
    assert code == 0, out[-2000:]
    keys = [key for _, key, _, _ in after]
    assert len(keys) == len(set(keys)) == harness.EXPECTED["bench"] and all(status == "ok" for _, _, status, _ in after)
    before = {key: (cid, fin) for cid, key, status, fin in event.stored_after if status == "ok"}
    assert all((cid, fin) == before[key] for cid, key, _, fin in after if key in before)  # what was kept was not measured again


@pytest.mark.slow
def test_a_live_run_is_not_resumed_twice_and_sigterm_exits_143(tmp_path):
    db = tmp_path / "runs.db"
    first = harness.start("bench-long", db, tmp_path)
    try:
        assert harness.wait_for(first, lambda: harness.running(db) and len(harness.cells(db)) >= 1)
        second = subprocess.run([sys.executable, "-m", "diffprof", "bench", "--resume", "latest", "--db", str(db), "--no-report", "--no-progress"],
                                cwd=tmp_path, env=harness.env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "still being measured by pid" in second.stderr and "hint:" in second.stderr
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143 and "interrupted (SIGTERM)" in err and "resume: diffprof bench --resume" in err


def test_an_interruption_after_the_run_finished_says_the_run_is_complete(tmp_path, capsys):
    """A signal that lands while bench prints its tables or writes its report (all cells stored):
    the message names the complete run, not 'no run was being recorded' (the interrupt campaign
    hit this twice in 33 interruptions)."""
    from diffprof.cli import commands  # noqa: F401  (registers bench's way to continue)
    from diffprof.cli.app import _interrupted
    from diffprof.results import CellResult
    from diffprof.suites.runner import RunSummary, after_run

    with Store(tmp_path / "r.db") as store:
        rid = store.create_run("diffprof bench", {}, {})
        for i in range(3):
            store.add_cell(rid, CellResult("s", {"i": i}, {}, metrics={"m": 1.0}))
        store.finish_run(rid)
        with pytest.raises(Interrupted) as caught:
            with after_run(store, RunSummary(run_id=rid)):
                raise KeyboardInterrupt
    kept = caught.value.kept
    assert kept is not None and kept.finished and (kept.ok, kept.stored, kept.total) == (3, 3, 3)
    assert _interrupted(caught.value, ["bench", "--db", str(tmp_path / "r.db")]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"kept: run {rid} in " in err and "3 of 3 cells stored" in err and "had finished measuring" in err
    assert f"its tables: diffprof show {rid} --db " in err and "--resume" not in err


def test_a_signal_swallowed_in_a_destructor_stops_the_run_at_the_next_cell():
    """SIGINT landing in a ``__del__`` is only printed by Python ("Exception ignored in"); the
    interruption is raised again where the runner may stop, between cells."""
    import gc
    import os

    from diffprof.interrupts import raise_pending

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises here, inside __del__: swallowed

    with signals_interrupt() as caught:
        raise_pending()  # nothing caught yet: nothing raised
        Finalized()
        gc.collect()
        assert len(caught.raised) == 1  # caught, but the code running on never saw it
        with pytest.raises(Interrupted, match="SIGINT"):
            raise_pending()
    raise_pending()  # outside the block: nothing pending
