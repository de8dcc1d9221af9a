"""`local`: one worker process per visible GPU (or N CPU workers), cells handed out as workers free up.

Each worker is ``python -m diffprof.suites.worker --serve`` with ``CUDA_VISIBLE_DEVICES`` set to
its own card, so ``cuda`` inside it is that card and nothing else is visible. Workers keep their
loaded pipeline between cells of the same engine key; the :class:`CellQueue` hands each worker
more cells of the key it already holds. The parent alone writes the store.

A worker that dies (its pipe closes) loses only its current cell: the cell goes back to the queue
and a fresh worker takes the dead one's place. Worker stderr (library warnings, tracebacks with
``DIFFPROF_DEBUG``) goes to a log per worker, and the last line of it to the reason of a death.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from diffprof.config import RunConfig
from diffprof.errors import ConfigError, DiffprofError
from diffprof.results import CellResult
from diffprof.suites.base import Cell, cuda_expected
from diffprof.suites.executors.base import CellQueue, Deaths, Executor, Intake, Listener, Results, Worker, default_threads, dispatch, lose
from diffprof.suites.worker import cell_from_json, cell_message, worker_env

#: Seconds a stopping worker gets to finish before it is terminated (then killed).
STOP_GRACE_S = 5.0


@dataclass
class Slot:
    """A place for one worker: its name and what makes it that (its GPU, its threads)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return listed[:count]
    return [str(i) for i in range(count)]


def local_slots(config: RunConfig, workers: int | None = None) -> list[Slot]:
    """One slot per visible GPU (round-robin when ``workers`` asks for more), or ``workers`` CPU
    slots (default: the cores divided by ``threads``)."""
    if re.fullmatch(r"cuda:\d+", config.device):
        raise ConfigError(
            f"device {config.device} pins one GPU, but the local executor gives every worker its own GPU",
            "use --device cuda (choose the cards with CUDA_VISIBLE_DEVICES), or --executor serial for one card",
        )
    if cuda_expected(config):
        gpus = visible_gpus()
        if not gpus:
            raise ConfigError("device cuda was asked for but no CUDA GPU is visible", "use --device cpu, or check drivers / CUDA_VISIBLE_DEVICES")
        n = workers or len(gpus)
        slots = []
        for i in range(n):
            gpu = gpus[i % len(gpus)]
            name = f"gpu{gpu}" + (f"-{i // len(gpus)}" if n > len(gpus) else "")
            slots.append(Slot(name, {"CUDA_VISIBLE_DEVICES": gpu}))
    else:
        n = workers or max(1, (os.cpu_count() or 1) // (config.threads or 1))
        slots = [Slot(f"cpu{i}") for i in range(n)]
    threads = default_threads(config, n)
    if threads:
        for slot in slots:
            slot.env["OMP_NUM_THREADS"] = str(threads)
    return slots


class _Process(Worker):
    """One worker process and a thread turning its stdout into messages in the executor's inbox."""

    def __init__(self, slot: Slot, inbox: Inbox, log_dir: Path | None) -> None:
        super().__init__(slot.name)
        self.slot = slot
        self.inbox = inbox
        self.ready = False
        self.closed = False
        self.stopping = False
        self.log: Path | None = None
        stderr: IO[str] | None = None
        if log_dir is not None:
            self.log = log_dir / f"{slot.name}-{time.monotonic_ns()}.log"
            stderr = self.log.open("w")
        cmd = [sys.executable, "-m", "diffprof.suites.worker", "--serve", "--name", slot.name]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1, env=worker_env(slot.env))
        finally:
            if stderr is not None:
                stderr.close()
        threading.Thread(target=self._read, name=f"diffprof-{slot.name}", daemon=True).start()

    @property
    def available(self) -> bool:
        return self.ready and not self.closed and self.cell is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.inbox.put((self, json.loads(line)))
            except ValueError:
                continue  # not a protocol line (stdout is redirected in the worker; be safe anyway)
        self.inbox.put((self, {"exit": self.proc.wait()}))

    def submit(self, cell: Cell) -> None:
        self._write({"cell": cell_message(cell)})

    def _write(self, message: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died; its reader thread reports the exit and the cell is run again

    def death_reason(self, code: int) -> str:
        if code < 0:
            try:
                what = signal.Signals(-code).name
            except ValueError:
                what = f"signal {-code}"
            reason = f"{self.name} was killed by {what}" + (" (often the out-of-memory killer)" if what == "SIGKILL" else "")
        else:
            reason = f"{self.name} exited with code {code}"
        tail = self.log_tail()
        return f"{reason}: {tail}" if tail else reason

    def log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""

    def stop(self) -> None:
        """Ask the worker to exit after its current cell (it reads a stop line or end of input)."""
        self.stopping = True
        self._write({"stop": True})
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass


Inbox = queue.Queue[tuple[_Process, dict[str, Any]]]


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, config: RunConfig, workers: int | None = None) -> None:
        super().__init__(config)
        self.slots = local_slots(config, workers if workers is not None else config.workers)

    def describe(self) -> str:
        n = len(self.slots)
        return f"local: {n} worker{'s' if n != 1 else ''} ({', '.join(s.name for s in self.slots)})"

    def execute(self, cells: Sequence[Cell], listener: Listener) -> Results:
        intake = Intake(cells)
        first = intake.new()
        if not first:
            return
        slots = self.slots[: len(first)]  # no more workers than cells
        listener.workers([s.name for s in slots])
        pending = CellQueue(first)
        deaths = Deaths()
        inbox: Inbox = queue.Queue()
        with tempfile.TemporaryDirectory(prefix="diffprof-workers-") as tmp:
            log_dir = None if os.environ.get("DIFFPROF_DEBUG") else Path(tmp)  # debug: stderr shows
            workers = [_Process(slot, inbox, log_dir) for slot in slots]
            remaining = len(first)
            try:
                while remaining:
                    worker, message = _next(inbox)
                    if worker.closed:
                        continue  # a late line from a replaced worker
                    done: list[tuple[Cell, CellResult]] = []
                    failed: CellResult | None = None
                    if "ready" in message:
                        worker.ready = True
                    elif "result" in message:
                        done.append((worker.take(), cell_from_json(message["result"])))
                    elif "died" in message:  # an isolated cell's own process died; the worker lives
                        cell = worker.take()
                        if (failed := lose(worker, cell, message["died"], pending, deaths, listener)) is not None:
                            done.append((cell, failed))
                    elif "exit" in message:
                        worker.closed = True
                        if worker.stopping:
                            continue
                        reason = worker.death_reason(message["exit"])
                        if not worker.ready:
                            raise DiffprofError(
                                f"local worker {reason}, before it could run a cell",
                                "run `python -m diffprof.suites.worker --serve` to see why it cannot start, or use --executor serial",
                            )
                        if worker.cell is None:
                            listener.lost(worker.name, None, reason, retry=False)
                        else:
                            cell = worker.take()
                            if (failed := lose(worker, cell, reason, pending, deaths, listener)) is not None:
                                done.append((cell, failed))
                    dispatch(workers, pending, listener)
                    if worker.closed and len(pending):  # its cells need a place to run
                        workers[workers.index(worker)] = _Process(worker.slot, inbox, log_dir)
                    for pair in done:
                        remaining -= 1
                        yield pair
                    if arrived := intake.new():  # appended while a result was read (tune's next cell)
                        for cell in arrived:
                            pending.add(cell)
                        remaining += len(arrived)
                        # a worker that died with nothing queued was not replaced then; it is now
                        workers = [_Process(w.slot, inbox, log_dir) if w.closed else w for w in workers]
                        dispatch(workers, pending, listener)
            finally:
                _stop_all(workers)


def _next(inbox: Inbox) -> tuple[_Process, dict[str, Any]]:
    while True:  # a timeout keeps Ctrl-C responsive
        try:
            return inbox.get(timeout=0.5)
        except queue.Empty:
            continue


def _stop_all(workers: list[_Process]) -> None:
    """Stop every worker: a stop line, then terminate, then kill, so none outlives the run."""
    for worker in workers:
        if worker.proc.poll() is None:
            worker.stop()
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        try:
            worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.proc.terminate()
    for worker in workers:
        try:
            worker.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
