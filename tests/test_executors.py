"""Executors (issue #7): serial and local give the same cells; lost workers' cells run again; resume
works across executors. On CPU with the built-in tiny model at 32 px, 1 step, 1 thread.

Each ``local`` run starts real worker processes (about 3 s of imports each on 2 cores), so these
tests hold few cells. Ray has its own file (test_executors_ray.py).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.results import CellResult
from diffprof.store import Store
from diffprof.suites import expand
from diffprof.suites import worker as worker_module
from diffprof.suites.base import Cell
from diffprof.suites.executors import get_executor
from diffprof.suites.executors.base import DEATHS_PER_CELL, DIED, CellQueue, Deaths, Listener
from diffprof.suites.executors.local import LocalExecutor, local_slots
from diffprof.suites.executors.serial import SerialExecutor
from diffprof.suites.runner import Runner
from diffprof.suites.worker import TEST_KILL_ENV, WorkerDied, worker_env

#: A small sweep: two schedulers and two memory settings; model_cpu_offload fails on the CPU.
SWEEP: dict[str, Any] = {
    "suites": ["schedulers", "memory"], "schedulers": ["ddim", "euler"], "memory_optimizations": ["none", "model_cpu_offload"],
    "width": 32, "height": 32, "steps": 1, "repeats": 1, "warmup": 0, "threads": 1, "device": "cpu", "report": None,
    "isolate": False,  # the memory cells in this process, as the schedulers'
}  # fmt: skip


def sweep(**changes: Any) -> RunConfig:
    return RunConfig.from_mapping(SWEEP | changes)


def stored(db: Path, run_id: int) -> dict[str, str]:
    """cell key -> status as the store holds them; fails if any cell is stored twice."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT cell_key, status FROM cells WHERE run_id = ?", (run_id,)).fetchall()
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)), f"a cell was stored twice: {Counter(keys).most_common(1)}"
    return dict(rows)


def run_sweep(db: Path, config: RunConfig, **kw: Any) -> tuple[int, str]:
    """Run ``config`` into ``db``; the run id and what the runner printed."""
    out = StringIO()
    with Store(db) as store:
        summary = Runner(config, store, console=Console(file=out, width=300), progress=False, **kw).run()
    return summary.run_id, out.getvalue()


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    db = tmp_path_factory.mktemp("serial") / "serial.db"
    run_id, _ = run_sweep(db, sweep())
    return db, run_id


def expected(config: RunConfig) -> dict[str, str]:
    """What every executor must store for :func:`sweep`: each cell under its key, offload failed."""
    return {c.key: "failed" if c.labels.get("optimization") == "model_cpu_offload" else "ok" for c in expand(config)}


# ---------------------------------------------------------------------- the queue and deaths
def cell(scheduler: str, optimize: tuple[str, ...] = ()) -> Cell:
    return Cell("schedulers", {"scheduler": scheduler}, RunConfig(scheduler=scheduler, optimize=list(optimize)))


def test_queue_keeps_a_worker_on_its_engine_and_spreads_new_keys() -> None:
    a1, a2, a3 = cell("ddim"), cell("euler"), cell("pndm")
    b1, b2 = cell("ddim", ("vae_slicing",)), cell("euler", ("vae_slicing",))
    c1 = cell("ddim", ("vae_tiling",))
    queue = CellQueue([a1, b1, a2, c1, b2, a3])
    first = queue.next_for(None)
    assert first is a1  # sweep order first
    # a second worker gets a key nobody holds, in sweep order
    assert queue.next_for(None, busy={a1.engine_key}) is b1
    # a worker keeps its own key while it lasts
    assert queue.next_for(a1.engine_key, busy={b1.engine_key}) is a2
    assert queue.next_for(a1.engine_key, busy={b1.engine_key}) is a3
    # its key is done: the free key (c) before helping with a busy one (b)
    assert queue.next_for(a1.engine_key, busy={b1.engine_key}) is c1
    # only busy keys left: help with the biggest
    assert queue.next_for(c1.engine_key, busy={b1.engine_key}) is b2
    assert len(queue) == 0 and queue.next_for(None) is None


def test_requeued_cell_runs_next_on_its_key() -> None:
    a1, a2 = cell("ddim"), cell("euler")
    queue = CellQueue([a1, a2])
    taken = queue.next_for(None)
    queue.requeue(taken)  # type: ignore[arg-type]
    assert len(queue) == 2 and queue.next_for(a1.engine_key) is a1


def test_deaths_rerun_then_fail_with_the_reason() -> None:
    deaths = Deaths()
    c = cell("ddim")
    for _ in range(DEATHS_PER_CELL - 1):
        assert deaths.record(c, "gpu0 was killed by SIGKILL") is None
    failed = deaths.record(c, "gpu0 was killed by SIGKILL")
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and failed.error.startswith(DIED) and "SIGKILL" in failed.error
    assert failed.key == c.key


class Recorder(Listener):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def started(self, worker: str, cell: Cell) -> None:
        self.events.append(("started", worker, cell.labels["scheduler"]))

    def lost(self, worker: str, cell: Cell | None, reason: str, retry: bool) -> None:
        self.events.append(("lost", worker, cell.labels["scheduler"] if cell else None, retry))


def test_serial_isolate_reruns_a_dead_subprocess_then_fails_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()

    def fake_isolated(c: Cell, timeout_s: float | None = None) -> CellResult:
        calls[c.labels["scheduler"]] += 1
        if c.labels["scheduler"] == "euler" or (c.labels["scheduler"] == "ddim" and calls["ddim"] == 1):
            raise WorkerDied("isolated worker exited with code -9")
        return CellResult(c.suite, c.labels, c.settings)

    monkeypatch.setattr(worker_module, "run_cell_isolated_once", fake_isolated)
    config = sweep(suites=["schedulers"], schedulers=["ddim", "euler", "pndm"], isolate=True)
    recorder = Recorder()
    results = {c.labels["scheduler"]: r for c, r in SerialExecutor(config).execute(expand(config), recorder)}
    assert calls == {"ddim": 2, "euler": DEATHS_PER_CELL, "pndm": 1}
    assert results["ddim"].ok and results["pndm"].ok
    assert not results["euler"].ok and DIED in (results["euler"].error or "")
    assert ("lost", "main", "ddim", True) in recorder.events and ("lost", "main", "euler", False) in recorder.events


# ---------------------------------------------------------------------- config and slots
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"executor": "locl"}, "unknown executor 'locl'"),
        ({"workers": 2}, "needs a parallel executor"),
        ({"executor": "local", "workers": 0}, "workers must be a whole number"),
        ({"ray_address": "auto"}, "ray_address is set but the executor is serial"),
    ],
)
def test_config_rejects_bad_execution_settings(changes: dict[str, Any], message: str) -> None:
    from diffprof.suites.checks import check_config

    with pytest.raises(ConfigError, match=message):  # executor names are the executors' registry's: check_config knows them
        check_config(RunConfig.from_mapping(changes))


def test_config_file_sets_execution(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("executor: ray\nworkers: 3\nray_address: auto\n")
    config = RunConfig.load(path)
    assert (config.executor, config.workers, config.ray_address) == ("ray", 3, "auto")
    assert "Ray cluster" in RunConfig.help_for("ray_address")


def test_cli_reports_bad_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from diffprof.cli.app import main

    assert main(["bench", "--executor", "locl", "--db", str(tmp_path / "x.db"), "--no-progress"]) == 2
    assert "did you mean 'local'" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()  # nothing stored for bad input


def test_cpu_slots_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    slots = local_slots(sweep(threads=None), workers=4)
    assert [s.name for s in slots] == ["cpu0", "cpu1", "cpu2", "cpu3"]
    assert {s.env["OMP_NUM_THREADS"] for s in slots} == {"2"}
    assert len(local_slots(sweep(threads=2))) == 4  # default: cores / threads
    assert "OMP_NUM_THREADS" not in local_slots(sweep(threads=2))[0].env  # the config decides


def test_gpu_slots_one_per_visible_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    slots = local_slots(sweep(device="cuda"))
    assert [(s.name, s.env["CUDA_VISIBLE_DEVICES"]) for s in slots] == [("gpu3", "3"), ("gpu5", "5")]
    more = local_slots(sweep(device="cuda"), workers=3)
    assert [(s.name, s.env["CUDA_VISIBLE_DEVICES"]) for s in more] == [("gpu3-0", "3"), ("gpu5-0", "5"), ("gpu3-1", "3")]
    with pytest.raises(ConfigError, match="pins one GPU"):
        local_slots(sweep(device="cuda:1"))


def test_get_executor_follows_the_config() -> None:
    assert isinstance(get_executor(sweep()), SerialExecutor)
    executor = get_executor(sweep(executor="local", workers=2))
    assert isinstance(executor, LocalExecutor) and executor.describe() == "local: 2 workers (cpu0, cpu1)"


# ---------------------------------------------------------------------- serial
def test_serial_stores_every_cell_under_its_key(serial_run: tuple[Path, int]) -> None:
    db, run_id = serial_run
    assert stored(db, run_id) == expected(sweep())


def test_resume_skips_finished_cells_and_retries_failed_ones(serial_run: tuple[Path, int], tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    with closing(sqlite3.connect(serial_run[0])) as src, closing(sqlite3.connect(db)) as dst:
        src.backup(dst)
    with Store(db) as store:
        summary = Runner(sweep(), store, console=Console(file=StringIO()), progress=False).run(resume=serial_run[1])
    assert summary.skipped == 3  # the ok cells, whatever settings their results carry
    assert [c.labels for c in summary.cells] == [{"optimization": "model_cpu_offload"}]
    assert summary.cells[0].key == summary.cells[0].cell_key  # stored under the requested cell's key
    assert stored(db, serial_run[1]) == expected(sweep())  # the retry replaced the failure


# ---------------------------------------------------------------------- local
@pytest.mark.slow  # worker processes import torch and diffusers (seconds each on 2 cores)
def test_local_gives_the_same_cells_as_serial(serial_run: tuple[Path, int], tmp_path: Path) -> None:
    config = sweep(executor="local", workers=2)
    run_id, out = run_sweep(tmp_path / "local.db", config)
    assert stored(tmp_path / "local.db", run_id) == stored(*serial_run)
    with Store(tmp_path / "local.db") as store:
        run = store.get_run(run_id)
    failed = [c for c in run.cells if not c.ok]
    assert len(failed) == 1 and "needs a CUDA device" in (failed[0].error or "")  # refused before any worker ran it
    assert {c.settings["worker"] for c in run.cells if c.ok} <= {"cpu0", "cpu1"}
    assert "model_cpu_offload" in out  # failures are printed as they come


@pytest.mark.slow  # worker processes import torch and diffusers (seconds each on 2 cores)
def test_local_reruns_a_killed_workers_cell_and_fails_a_cell_that_always_kills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "euler-died-once"
    monkeypatch.setenv(TEST_KILL_ENV, f"scheduler=euler@{marker};scheduler=pndm")
    # one worker (each death starts a fresh one): test_local_gives_the_same_cells_as_serial runs two at once
    config = sweep(suites=["schedulers"], schedulers=["ddim", "euler", "pndm"], executor="local", workers=1)
    run_id, out = run_sweep(tmp_path / "kill.db", config)
    cells = {c.labels["scheduler"]: c for c in expand(config)}
    assert stored(tmp_path / "kill.db", run_id) == {
        cells["ddim"].key: "ok", cells["euler"].key: "ok", cells["pndm"].key: "failed"
    }
    assert marker.exists()  # euler really killed its worker once
    with Store(tmp_path / "kill.db") as store:
        pndm = next(c for c in store.get_run(run_id).cells if c.labels["scheduler"] == "pndm")
    assert pndm.error is not None and pndm.error.startswith(f"{DIED} ({DEATHS_PER_CELL} times") and "SIGKILL" in pndm.error
    assert out.count("! cpu") == 1 + DEATHS_PER_CELL and out.count("was killed by SIGKILL") >= 1 + DEATHS_PER_CELL
    assert "scheduler=euler runs again" in out and "scheduler=pndm is failed" in out


# ---------------------------------------------------------------------- resume across executors
PARENT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
from diffprof.config import RunConfig
from diffprof.store import Store
from diffprof.suites.runner import Runner

stored = []
def on_cell(result):
    stored.append(result)
    if len(stored) == 2:  # die like a killed job: no cleanup, no finish_run
        os.kill(os.getpid(), signal.SIGKILL)

Runner(RunConfig.from_mapping(json.loads(sys.argv[2])), Store(sys.argv[1]), progress=False, on_cell=on_cell).run()
"""


@pytest.mark.slow  # worker processes import torch and diffusers (seconds each on 2 cores)
def test_resume_a_killed_local_run_with_serial_runs_every_cell_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "resume.db"
    # one worker: the parent and its one worker are the processes this needs (a second worker proves nothing more here)
    changes = {"suites": ["schedulers", "memory"], "schedulers": ["ddim", "euler", "pndm"], "executor": "local", "workers": 1}
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), str(db), json.dumps(SWEEP | changes)], env=worker_env(), start_new_session=True)
    try:
        assert proc.wait(timeout=300) == -signal.SIGKILL
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its workers, if any outlived it
        except ProcessLookupError:
            pass
    with Store(db) as store:
        run = store.get_run("latest")
        assert run.status == "interrupted" and len(run.cells) == 2
    before = stored(db, run.id)
    from diffprof.cli.app import main

    # the stored config says local with 1 worker; this command runs the rest serially
    code = main(["bench", "--resume", str(run.id), "--executor", "serial", "--db", str(db), "--no-report", "--no-progress"])
    assert code == 3  # the offload cell fails on the CPU
    after = stored(db, run.id)
    assert after == expected(sweep(**changes))  # every cell exactly once, with its status
    assert all(after[k] == "ok" for k, status in before.items() if status == "ok")
    with Store(db) as store:
        assert store.get_run(run.id).status == "finished"


def test_queue_hands_out_longest_cells_first_within_a_key() -> None:
    from diffprof.suites.executors.base import CellQueue

    base = RunConfig(model="tiny-sd", width=32, height=32, suites=["steps"], step_counts=[2, 8, 4])
    cells = expand(base)
    queue = CellQueue(cells)
    order = []
    while (cell := queue.next_for(None)) is not None:
        order.append(cell.config.steps)
    assert order == [8, 4, 2]


def test_queue_puts_a_late_cell_after_the_longer_cells_of_its_key() -> None:
    base = RunConfig(model="tiny-sd", width=32, height=32, suites=["steps"], step_counts=[8, 2])
    long, short = expand(base)
    queue = CellQueue([long, short])
    late = Cell("steps", {"steps": 4}, RunConfig(model="tiny-sd", width=32, height=32, steps=4))
    queue.add(late)
    assert [queue.next_for(None).config.steps for _ in range(3)] == [8, 4, 2]  # type: ignore[union-attr]


# ---------------------------------------------------------------------- cells that arrive one at a time
def submit_one_at_a_time(config: RunConfig, db: Path) -> tuple[list[CellResult], list[Cell], Any]:
    """tune's way in: each cell appended after the last result came back, every result recorded."""
    from diffprof.suites.runner import CellSubmitter, RecordedRun

    cells = expand(config)
    with Store(db) as store:
        with RecordedRun.create(store, config, "test") as record, CellSubmitter(get_executor(config), record=record) as submitter:
            results = [submitter.run(c) for c in cells]
        return results, cells, store.get_run(record.run_id)


@pytest.mark.parametrize("name", ["serial", "local"])
def test_a_submitter_keeps_one_executor_run_and_its_engine_for_every_cell(name: str, tmp_path: Path) -> None:
    """The executor runs once, so the second cell reuses the worker and the engine the first one
    loaded, and both are stored under the keys asked for."""
    config = sweep(suites=["schedulers"], executor=name, workers=2 if name == "local" else None)
    (a, b), (first, second), run = submit_one_at_a_time(config, tmp_path / "s.db")
    assert a.ok and b.ok and a.labels == first.labels and b.labels == second.labels
    assert (a.settings["engine_reused"], b.settings["engine_reused"]) == (False, True)
    assert a.settings.get("worker") == b.settings.get("worker") == ("cpu0" if name == "local" else None)
    assert run.status == "finished" and [c.cell_key for c in run.cells] == [first.key, second.key]
