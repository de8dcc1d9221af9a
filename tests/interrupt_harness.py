"""Fault injection: `diffprof bench`, `tune` and `calibrate` interrupted at random moments.

Shared by tests/test_interrupts.py (a few cases) and benchmarks/interrupt_campaign.py (30+). A
command runs as a real subprocess on the built-in tiny model; the harness waits until the store
holds a chosen number of finished cells (or a random delay), sends SIGINT, SIGTERM or SIGKILL, and
reads back what the process said and what the store holds. Then it resumes (bench, calibrate) or
reruns (tune) until the run is complete, and checks that no finished cell was lost or stored twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FAST = ["--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress"]
#: One command per kind, on tiny-sd, each a few seconds of cells after start-up.
COMMANDS: dict[str, list[str]] = {
    "bench": ["bench", "-s", "steps", "--step-counts", "2,4,6,8,10,12,14,16,18,20", "--width", "32", "--height", "32", "--model", "tiny-sd",
              "--no-report", *FAST],
    # long enough (tens of seconds) for a second process to start while it measures
    "bench-long": ["bench", "-s", "steps", "--step-counts", ",".join(str(30 * k) for k in range(1, 11)), "--width", "64", "--height", "64",
                   "--model", "tiny-sd", "--no-report", *FAST],
    # --force: these are about interruptions; a calibration finished on this shared (busy) machine must not be refused for it
    "calibrate": ["calibrate", "--model", "tiny-sd", "--device", "cpu", "--resolutions", "32,40,48", "--batch-sizes", "1,2", "--steps", "2", "--force",
                  "--no-isolate", *FAST],
    "tune": ["tune", "--model", "tiny-sd", "--device", "cpu", "--width", "32", "--height", "32", "--schedulers", "euler,ddim,dpmpp_2m",
             "--step-counts", "4,8,12", "--precisions", "fp32", "--optimizations", "none", "--prompts", "2", "--metric", "convergence",
             "--reference-steps", "16", "--tolerance", "100", "--repeats", "1", "--threads", "1", "--no-progress"],
}
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}
#: Cells a complete run of each command holds (tune: however many its search measures).
EXPECTED: dict[str, int | None] = {"bench": 10, "calibrate": 6, "tune": None}
#: Stored cells to wait for before a signal (0: only the run recorded), leaving some to interrupt.
AFTER = {"bench": (0, 1, 2, 3, 4, 5, 6), "calibrate": (0, 1, 2, 3), "tune": (0, 1, 2)}


def env() -> dict[str, str]:
    import diffprof

    root = str(Path(diffprof.__file__).resolve().parents[1])
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


def start(kind: str, db: Path, cwd: Path, extra: list[str] | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "diffprof", *COMMANDS[kind], "--db", str(db), *(extra or [])]
    if kind == "tune":
        args += ["--out", str(cwd / "tuned.yaml")]
    return subprocess.Popen(args, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cells(db: Path) -> list[tuple[int, str, str, str]]:
    """(id, key, status, finished_at) of every stored cell of the newest run."""
    if not db.exists():
        return []
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            run = conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
            return conn.execute("SELECT id, cell_key, status, finished_at FROM cells WHERE run_id = ? ORDER BY id", (run,)).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def newest_status(db: Path) -> str | None:
    if not db.exists():
        return None
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            row = conn.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        except sqlite3.OperationalError:
            return None
    return row[0] if row else None


def running(db: Path) -> bool:
    if not db.exists():
        return False
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False


def wait_for(proc: subprocess.Popen[str], ready, timeout: float = 300) -> bool:
    """Poll until ``ready()`` or the process ends; True when ready while it still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    return False


@dataclass
class Interruption:
    kind: str
    sig: int
    after_cells: int
    delay_s: float
    code: int | None = None
    stderr: str = ""
    stored_before: list[tuple[int, str, str, str]] = field(default_factory=list)
    stored_after: list[tuple[int, str, str, str]] = field(default_factory=list)
    finished_early: bool = False

    @property
    def said_what_was_kept(self) -> bool:
        """SIGINT/SIGTERM: the interruption, the run and its stored cells, and how to go on."""
        text = " ".join(self.stderr.split())
        follow = "tune has no resume: rerun diffprof tune" if self.kind == "tune" else "resume: diffprof bench --resume "
        if "had finished measuring" in text:  # the signal landed after the last cell: nothing to resume
            follow = "diffprof show " if self.kind == "bench" else follow
        return f"interrupted ({signal.Signals(self.sig).name})" in text and "kept: run " in text and follow in text and "--db " in text

    @property
    def lost(self) -> list[str]:
        """Cells stored ok before the signal that are not there, unchanged, after it."""
        after = {key: (cid, fin) for cid, key, status, fin in self.stored_after if status == "ok"}
        return [key for cid, key, status, fin in self.stored_before if status == "ok" and after.get(key) != (cid, fin)]


def interrupt(kind: str, sig: int, folder: Path, *, after_cells: int = 1, delay_s: float = 0.0) -> Interruption:
    """Start ``kind``, wait for ``after_cells`` stored cells (0: for the run to be recorded) plus
    ``delay_s``, send ``sig``, and collect what happened."""
    db = folder / "runs.db"
    event = Interruption(kind, sig, after_cells, delay_s)
    proc = start(kind, db, folder)
    ready = (lambda: len(cells(db)) >= after_cells) if after_cells else (lambda: running(db))
    if wait_for(proc, ready):
        time.sleep(delay_s)
        event.stored_before = cells(db)
        if proc.poll() is None and newest_status(db) == "running":
            proc.send_signal(sig)
        else:  # the run finished while the harness waited: nothing left to interrupt
            event.finished_early = True
    else:
        event.finished_early = True
    try:
        _, event.stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    event.code = proc.returncode
    event.stored_after = cells(db)
    return event


def resume_args(db: Path) -> list[str]:
    """`diffprof bench --resume latest` on ``db``: the command a user runs after an interruption."""
    return ["bench", "--resume", "latest", "--db", str(db), "--no-report", "--no-progress"]


def resume(folder: Path, capsys: Any, *, tries: int = 1) -> tuple[int, str]:
    """Resume the newest bench run in ``folder`` in this process (the interrupted run is the process
    under test; its resume need not be another) up to ``tries`` times until it exits 0: its exit
    code and what it printed to stderr."""
    from diffprof.cli.app import main

    code, err = -1, ""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        capsys.readouterr()
        for _ in range(tries):
            code = main(resume_args(folder / "runs.db"))
            err = capsys.readouterr().err
            if code == 0:
                break
    return code, err
