"""The executor contract: how a sweep's cells get run (here, on every GPU of a host, on a cluster).

An executor takes the cells still to do and yields ``(cell, result)`` pairs as cells finish, in any
order. The runner owns everything around that (the store, resume, the summary), so an executor is
only about *where* cells run. The list of cells may grow while results are read: a caller that
decides its next cell from the last result (``tune``'s search, through
:class:`~diffprof.suites.runner.CellSubmitter`) appends it before asking for the next result, and the
executor takes it up with the workers, and the pipelines they hold, it already has. Rules every
executor keeps:

- Every cell handed in comes back exactly once, ``ok`` or ``failed``. A cell's own failure (an
  exception, an impossible combination) is a failed result, never an exception out of the executor.
- A worker that dies (SIGKILL, out-of-memory killer, a lost Ray actor) loses only the cell it was
  running: that cell runs again, and after :data:`DEATHS_PER_CELL` deaths it is failed with
  :data:`DIED` in its reason, so a cell that kills its worker cannot loop forever.
- Only the parent process writes the store; workers send results back.
- An executor raises a :class:`~diffprof.errors.DiffprofError` only when it cannot work at all
  (Ray not installed, workers that cannot start).

A new executor is one module with one :class:`Executor` subclass registered in
:data:`diffprof.suites.executors.EXECUTORS`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Generator, Sequence
from typing import Any, ClassVar

from diffprof.config import RunConfig
from diffprof.results import CellResult
from diffprof.suites.base import Cell
from diffprof.suites.measure import now
from diffprof.suites.worker import failed_cell

#: A cell whose worker died this many times is failed instead of run again.
DEATHS_PER_CELL = 2
#: The start of a failed cell's reason when its workers kept dying.
DIED = "worker died while running this cell"

EngineKey = tuple[Any, ...]
#: What :meth:`Executor.execute` returns: a generator, so the runner can close it (stopping workers).
Results = Generator[tuple[Cell, CellResult], None, None]


class Listener:
    """What an executor reports besides results, for progress displays; every method may be ignored."""

    def workers(self, names: Sequence[str]) -> None:
        """The workers that will run cells (called once, before the first cell starts)."""

    def started(self, worker: str, cell: Cell) -> None:
        """``worker`` began ``cell``."""

    def idle(self, worker: str) -> None:
        """``worker`` has nothing to do (the queue is empty)."""

    def lost(self, worker: str, cell: Cell | None, reason: str, retry: bool) -> None:
        """``worker`` died (while running ``cell``, if any); ``retry``: the cell runs again."""


class Executor(ABC):
    """Runs cells somewhere and yields each with its result as it finishes."""

    name: ClassVar[str]
    #: True when cells run side by side (progress shows one line per worker).
    parallel: ClassVar[bool] = True

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def check(self) -> None:
        """Raise a :class:`~diffprof.errors.DiffprofError` now if this executor cannot run (no GPUs,
        no cluster); the runner calls it before it records the run, so bad input stores nothing."""

    @abstractmethod
    def execute(self, cells: Sequence[Cell], listener: Listener) -> Results:
        """Yield ``(cell, result)`` for every cell exactly once, as each finishes.

        Cells appended to ``cells`` while a result is being read are run too (see :class:`Intake`);
        the generator ends when every cell it was given has come back. A generator: closing it
        early (the caller stopped, Ctrl-C) must stop the workers.
        """

    def describe(self) -> str:
        """One line for the console, e.g. ``local: 2 workers (gpu0, gpu1)``."""
        return self.name


def estimated_cost(cell: Cell) -> float:
    """Relative work of a cell: UNet evaluations x latent pixels x images x calls. Only the order
    matters (for scheduling), so unknown sizes count as 1."""
    c = cell.config
    pixels = (c.width or 1) * (c.height or 1)
    return float(c.steps * pixels * c.batch * (c.repeats + c.warmup))


class CellQueue:
    """The cells still to run, handed out so each worker keeps its loaded pipeline.

    A worker asking for work gets the next cell of its own engine key when there is one (no
    reload); otherwise the first pending key no other worker holds (spreading model loads); and
    only when every pending key is busy, the key with the most cells left (helping out costs a
    load but shortens the sweep). Within a key the longest cells go first (longest-processing-time
    order), so the sweep does not end with one card busy on a long cell while the others idle.
    """

    def __init__(self, cells: Sequence[Cell]) -> None:
        self._groups: dict[EngineKey, list[Cell]] = {}
        for cell in sorted(cells, key=estimated_cost, reverse=True):  # stable: ties keep sweep order
            self._groups.setdefault(cell.engine_key, []).append(cell)

    def __len__(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def next_for(self, last_key: EngineKey | None, busy: Collection[EngineKey] = ()) -> Cell | None:
        """The cell a worker whose engine has ``last_key`` should run next; None when empty.

        ``busy``: the engine keys other workers are running now.
        """
        if not self._groups:
            return None
        if last_key in self._groups:
            key = last_key
        else:
            free = [k for k in self._groups if k not in busy]
            key = free[0] if free else max(self._groups, key=lambda k: len(self._groups[k]))
        group = self._groups[key]
        cell = group.pop(0)
        if not group:
            del self._groups[key]
        return cell

    def requeue(self, cell: Cell) -> None:
        """Put a cell back at the front of its group (it runs next on a worker of its key)."""
        self._groups.setdefault(cell.engine_key, []).insert(0, cell)

    def add(self, cell: Cell) -> None:
        """A cell that arrived after the queue was made: after the cells of its key at least as long."""
        group = self._groups.setdefault(cell.engine_key, [])
        cost = estimated_cost(cell)
        at = next((i for i, c in enumerate(group) if estimated_cost(c) < cost), len(group))
        group.insert(at, cell)


class Intake:
    """The cells of one :meth:`Executor.execute` call, read as they arrive: the caller may append to
    the list while it reads results, and :meth:`new` hands out what it appended since last asked."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self.cells = cells
        self.taken = 0

    def new(self) -> list[Cell]:
        """Cells not handed out yet (all of them the first time)."""
        fresh = list(self.cells[self.taken:])
        self.taken += len(fresh)
        return fresh


class Deaths:
    """Worker deaths per cell: a lost cell runs again until its workers died ``limit`` times."""

    def __init__(self, limit: int = DEATHS_PER_CELL) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()

    def record(self, cell: Cell, reason: str, started: str | None = None) -> CellResult | None:
        """Count a death against ``cell``: None means run it again; otherwise its failed result."""
        self.counts[cell.key] += 1
        n = self.counts[cell.key]
        if n < self.limit:
            return None
        times = "once" if n == 1 else f"{n} times"
        return failed_cell(cell, f"{DIED} ({times}; last: {reason})", started or now())


class Worker(ABC):
    """An executor's handle on one worker: the cell it runs now and the engine key it holds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cell: Cell | None = None
        self.started = ""
        self.last_key: EngineKey | None = None
        self.idle = False

    @property
    def available(self) -> bool:
        """Ready for a cell (started, alive, not busy)."""
        return self.cell is None

    def assign(self, cell: Cell) -> None:
        self.cell, self.started, self.last_key, self.idle = cell, now(), cell.engine_key, False
        self.submit(cell)

    @abstractmethod
    def submit(self, cell: Cell) -> None:
        """Send ``cell`` to the worker; its result arrives through the executor's own channel."""

    def take(self) -> Cell:
        """The cell that just finished (or was lost); the worker is free again."""
        cell, self.cell = self.cell, None
        if cell is None:
            raise RuntimeError(f"{self.name} answered without a cell")
        return cell


def dispatch(workers: Sequence[Worker], pending: CellQueue, listener: Listener) -> None:
    """Give every available worker its next cell (same engine key first, see :class:`CellQueue`)."""
    for worker in workers:
        if not worker.available:
            continue
        busy = {w.cell.engine_key for w in workers if w.cell is not None}
        cell = pending.next_for(worker.last_key, busy)
        if cell is None:
            if not worker.idle:
                worker.idle = True
                listener.idle(worker.name)
            continue
        worker.assign(cell)
        listener.started(worker.name, cell)


def lose(worker: Worker, cell: Cell, reason: str, pending: CellQueue, deaths: Deaths, listener: Listener) -> CellResult | None:
    """``worker`` died running ``cell``: requeue the cell (None) or, at the death limit, fail it."""
    failed = deaths.record(cell, reason, worker.started)
    listener.lost(worker.name, cell, reason, retry=failed is None)
    if failed is None:
        pending.requeue(cell)
    return failed


def default_threads(config: RunConfig, workers: int) -> int | None:
    """torch threads per worker when the config leaves it open: the host's cores shared out, so N
    workers on one host do not each spin up a thread per core (None: the config or the
    environment already decided)."""
    if config.threads or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // max(1, workers))
