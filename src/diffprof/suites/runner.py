"""Run a sweep: expand cells, hand them to an executor, store each cell the moment it finishes.

The runner owns the run's bookkeeping (the store, ``--resume``, the summary, the progress display);
an executor (:mod:`diffprof.suites.executors`) owns where cells run: ``serial`` in this process
(cells sharing an engine key reuse one loaded pipeline; ``isolate=True`` runs each cell in a fresh
subprocess), ``local`` on every GPU of this host, ``ray`` on a cluster. Whatever the executor, a
failing cell (out of memory, invalid combination) is stored as ``failed`` with its reason and the run
goes on; ``--resume RUN`` skips cells already ``ok``, whichever executor ran them. Only this process
writes the store.

A cell's repeats are spread over ``config.rounds`` rounds interleaved across the run's cells
(:mod:`diffprof.suites.rounds`): round 1 of every cell, then round 2, ... Each cell is stored merged
after each of its rounds, and a resume continues a cell at its next round. The host's state while
the run measures (load, others' CPU time per round, clocks; :mod:`diffprof.profiler.machine`) is
stored with the run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.interrupts import Interrupted, Kept, as_interrupted, raise_pending
from diffprof.profiler.machine import MachineState, MachineTracker
from diffprof.results import CellResult
from diffprof.suites.base import Cell, expand
from diffprof.suites.checks import check_config, check_inputs
from diffprof.suites.measure import now
from diffprof.suites.preflight import Preflight
from diffprof.suites.worker import failed_cell
from diffprof.suites.executors import get_executor
from diffprof.suites.executors.base import Executor, Listener, Results
from diffprof.suites.rounds import RoundPlan, planned_rounds


@dataclass
class RunSummary:
    run_id: int
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    report: str | None = None
    cells: list[CellResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every cell measured; 3 when some failed (distinct from 2 = bad input)."""
        return 3 if self.failed else 0


@dataclass
class Runner:
    """Expand the config into cells, run them on the configured executor, store each as it ends.

    Args:
        config: the run's configuration (``config.executor`` picks where cells run).
        store: a :class:`~diffprof.store.Store`.
        command: the command line, stored with the run.
        console: where progress and failures are printed (default: stderr).
        progress: show the live progress display.
        on_cell: called with each stored result, as it is stored.
        executor: run cells on this executor instead of the one ``config.executor`` names.
        name: a label for the new run, which run references accept (``compare baseline latest``).
    """

    def __init__(
        self,
        config: RunConfig,
        store: Any,
        *,
        command: str = "",
        console: Console | None = None,
        progress: bool = True,
        on_cell: Callable[[CellResult], None] | None = None,
        executor: Executor | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.store = store
        self.command = command
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.on_cell = on_cell
        self.executor = executor
        #: What the run said before measuring (switches left out on this device, cells it cannot run).
        self.notice: str | None = None

    def cells(self, config: RunConfig | None = None) -> list[Cell]:
        """The cells to measure: ``config``'s (default: the runner's) suites expanded; a subclass
        measures a fixed list (the held-out workloads of benchmarks/estimate_accuracy.py)."""
        return expand(config or self.config)

    def run(self, resume: int | str | None = None) -> RunSummary:
        check_config(self.config)  # registry names (schedulers, switches, suites, executor) before anything runs
        plan = Preflight.for_config(self.config)  # the device the cells run on, and what it cannot run
        cells = self.cells(plan.config)
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        if not self.config.use_diffusion:
            raise ConfigError("use_diffusion is false: there is nothing to benchmark", "set use_diffusion: true (or remove it)")
        if resume is None:  # a resumed run was checked when it started
            if not cells:
                raise ConfigError(
                    f"the config expands to no cells (suites: {', '.join(self.config.suites) or 'none'}): there is nothing to measure",
                    "name at least one suite (--suite, see `diffprof suites`) and give each swept list at least one value",
                )
            check_inputs(self.config)
        executor = self.executor or get_executor(self.config)
        executor.check()  # before the store: a setup that cannot run stores nothing
        refused = plan.refusals(cells)  # what this device cannot run or fit, before the store too
        summary = RunSummary(run_id=0)
        t0 = time.perf_counter()
        if resume is not None:
            record = RecordedRun.resume(self.store, resume, force=self.config.force)
        else:
            record = RecordedRun.create(self.store, self.config, self.command, name=self.name)
        tracker = MachineTracker()
        machine: MachineState | None = None
        try:
            with record:  # from the moment it exists: an interruption closes the run and says what it kept
                record.total = len(cells)
                summary.run_id = record.run_id
                rounds = RoundPlan(cells, record.stored_cells())
                summary.skipped = len(rounds.complete)
                complete = {c.key for c in rounds.complete}
                todo = rounds.first()
                self.notice = plan.message(todo, {k: v for k, v in refused.items() if k not in complete})
                if self.notice:  # said once, before anything is measured
                    self.console.print(self.notice, highlight=False, soft_wrap=True)
                up_front = [c for c in todo if c.key in refused]
                todo = [c for c in todo if c.key not in refused]
                if todo and executor.parallel:
                    self.console.print(f"executor {executor.describe()}", highlight=False)
                try:
                    with tracker.track() as machine:
                        self._measure(rounds, todo, executor, record, summary, tracker, plan)
                finally:
                    if machine is not None:  # filled in as the tracker's block exits, Ctrl-C included
                        record.add_machine(machine)
                for cell in up_front:  # stored after the measured ones, so tables keep the sweep's order of what ran
                    self._stored(summary, record.add(cell, failed_cell(replace(cell, round=None), refused[cell.key], now())), quiet=True)
        finally:
            summary.seconds = time.perf_counter() - t0
        return summary

    def _measure(self, rounds: RoundPlan, todo: list[Cell], executor: Executor, record: RecordedRun, summary: RunSummary,
                 tracker: MachineTracker, plan: Preflight) -> None:
        """Hand out every cell's rounds, round-major (the next round of a cell is queued when its
        last one returns, so a serial executor runs round 1 of all cells, then round 2, ...), and
        store each cell merged so far after each of its rounds (an interrupted run keeps them)."""
        measurements = sum(planned_rounds(c) - (c.round.index - 1 if c.round else 0) for c in todo)
        board = ProgressBoard(self.console, measurements, enabled=self.show_progress, per_worker=executor.parallel)
        outstanding: Counter[int] = Counter(c.round.index if c.round else 1 for c in todo)
        with board, closing(executor.execute(todo, board)) as results:  # closing it stops the workers
            for done, result in results:
                merged, following = rounds.add(done, plan.annotate(done, result))
                stored = record.add(done, merged)
                board.finished(done, stored)
                index = done.round.index if done.round else 1
                outstanding[index] -= 1
                if following is not None:
                    todo.append(following)  # the executor takes up cells appended while it is read
                    outstanding[index + 1] += 1
                if outstanding[index] == 0 and done.round is not None:
                    tracker.mark(f"round {index}")
                if following is None:
                    self._stored(summary, stored)
                raise_pending()  # a signal swallowed on its way (in a __del__, say) stops the run here

    def _stored(self, summary: RunSummary, stored: CellResult, *, quiet: bool = False) -> None:
        summary.cells.append(stored)
        if stored.ok:
            summary.ok += 1
        else:
            summary.failed += 1
            if not quiet:
                self.console.print(f"[red]✗ {_label(stored)}[/]: {stored.error}", highlight=False)
        if self.on_cell:
            self.on_cell(stored)


def _label(result: CellResult) -> str:
    return f"{result.suite}: " + (", ".join(f"{k}={v}" for k, v in result.labels.items()) or "default")


def kept_on_interrupt(exc: KeyboardInterrupt, store: Any, run_id: int, total: int | None) -> Interrupted:
    """The interruption, with what the run kept in the store (every finished cell, once)."""
    stopped = as_interrupted(exc)
    counts = store.cell_counts(run_id)
    stopped.kept = Kept(run_id, str(store.path), counts["ok"], counts["failed"], total)
    return stopped


@contextmanager
def after_run(store: Any, summary: RunSummary) -> Iterator[None]:
    """What a command does once its run finished (print the tables, write the report, fit): an
    interruption there says what the run kept, complete, rather than that no run was recorded."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted) and exc.kept is not None:
            raise
        stopped = kept_on_interrupt(exc, store, summary.run_id, None)
        assert stopped.kept is not None
        stopped.kept = replace(stopped.kept, total=stopped.kept.stored, finished=True)
        raise stopped from None


class RecordedRun:
    """A run in the store while it is measured: each result stored the moment it arrives, under the
    key of the cell that was *asked for*, and the run closed ``finished`` or, when the block it
    guards raises (Ctrl-C included), ``interrupted``. The runner and ``tune`` both record through it.

    Use as ``with RecordedRun.create(store, config, command) as record: record.add(cell, result)``.
    """

    def __init__(self, store: Any, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        #: The cells the run is to hold, when known (what an interruption reports them out of).
        self.total: int | None = None

    @classmethod
    def create(cls, store: Any, config: RunConfig, command: str, *, name: str | None = None) -> RecordedRun:
        """A new run holding the config and this host's environment."""
        from diffprof.environment import capture_environment

        return cls(store, store.create_run(command, config.to_dict(), capture_environment(), name=name))

    @classmethod
    def resume(cls, store: Any, ref: int | str, *, force: bool = False) -> RecordedRun:
        """An earlier run, reopened to add the cells it is missing; refused while another live
        process measures it (``force``: take over one whose owner cannot be checked)."""
        return cls(store, store.resume_run(ref, force=force))

    def finished_keys(self) -> set[str]:
        """Keys of the cells already stored ``ok`` (what a resume skips, once all their rounds are in)."""
        return set(self.store.finished_keys(self.run_id))

    def stored_cells(self) -> dict[str, CellResult]:
        """The run's cells stored ``ok`` so far, by key (none for a new run): a resume continues
        each at its next round, and skips those measured in every round."""
        keys = self.finished_keys()
        if not keys:
            return {}
        return {c.key: c for c in self.store.get_run(self.run_id).cells if c.key in keys}

    def add(self, cell: Cell, result: CellResult) -> CellResult:
        """Store ``result`` under ``cell``'s key: measured settings differ from the requested ones
        (and between executors), and resume must match what was asked for."""
        result.cell_key = cell.key
        result.id = self.store.add_cell(self.run_id, result)
        return result

    def add_machine(self, state: MachineState) -> None:
        """Store the host's state while this session measured, added to what earlier sessions of a
        resumed run stored."""
        stored = self.store.machine(self.run_id)
        merged = MachineState.from_dict(stored).merged(state) if stored else state
        self.store.set_machine(self.run_id, merged.to_dict())

    def close(self, status: str) -> None:
        self.store.finish_run(self.run_id, status)

    def __enter__(self) -> RecordedRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close("interrupted" if exc_type is not None else "finished")
        if isinstance(exc, KeyboardInterrupt):
            stopped = kept_on_interrupt(exc, self.store, self.run_id, self.total)
            if stopped is not exc:
                raise stopped from None


class CellSubmitter:
    """Cells handed to an executor one at a time, each result back before the next cell is chosen.

    For a caller whose next cell depends on the last result (``tune``'s search): the executor runs
    once for the caller's whole life, so its workers and the pipelines they hold stay loaded
    between cells, whichever executor it is. With ``record`` every result is stored as it arrives.
    :meth:`close` stops the workers.
    """

    def __init__(self, executor: Executor, *, record: RecordedRun | None = None, listener: Listener | None = None) -> None:
        self.executor = executor
        self.record = record
        self.listener = listener or Listener()
        self._cells: list[Cell] = []
        self._results: Results | None = None

    def run(self, cell: Cell, *, store: bool = True) -> CellResult:
        """Measure ``cell`` on the executor (a failure is a failed result, never an exception);
        ``store=False`` leaves storing to the caller (a round the caller merges first)."""
        self._cells.append(cell)  # the executor takes up cells appended while it waits to be resumed
        if self._results is None:
            self._results = self.executor.execute(self._cells, self.listener)
        try:
            done, result = next(self._results)
        except StopIteration:
            raise RuntimeError(f"executor {self.executor.name} returned no result for {cell.label}") from None
        return self.record.add(done, result) if self.record is not None and store else result

    def close(self) -> None:
        if self._results is not None:
            self._results.close()
            self._results = None

    def __enter__(self) -> CellSubmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressBoard(Listener):
    """One live display: the sweep's bar and, for parallel executors, a line per worker with the
    cell it is running and for how long. Lost workers are printed whether or not it is shown."""

    def __init__(self, console: Console, total: int, *, enabled: bool = True, per_worker: bool = False) -> None:
        self.console = console
        self.enabled = enabled
        self.per_worker = per_worker
        columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        self.overall = Progress(*columns, console=console)
        self.bar = self.overall.add_task("cells", total=total)
        self.lines = Progress(TextColumn("  [dim]{task.fields[worker]:>10}[/]"), TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
        self.rows: dict[str, TaskID] = {}
        self.live: Live | None = None

    def __enter__(self) -> ProgressBoard:
        if self.enabled:
            self.live = Live(Group(self.overall, self.lines), console=self.console, refresh_per_second=8)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def _row(self, worker: str) -> TaskID:
        if worker not in self.rows:
            self.rows[worker] = self.lines.add_task("starting", total=None, worker=worker)
        return self.rows[worker]

    # ------------------------------------------------------------------ Listener
    def workers(self, names: Sequence[str]) -> None:
        if self.per_worker:
            for name in names:
                self._row(name)

    def started(self, worker: str, cell: Cell) -> None:
        if self.per_worker:
            self.lines.reset(self._row(worker), description=cell.progress_label)
        else:
            self.overall.update(self.bar, description=cell.progress_label)

    def idle(self, worker: str) -> None:
        if self.per_worker:
            task = self._row(worker)
            self.lines.update(task, description="[dim]idle[/]")
            self.lines.stop_task(task)

    def lost(self, worker: str, cell: Cell | None, reason: str, retry: bool) -> None:
        if cell is None:
            what = "no cell was lost"
        else:
            what = f"{cell.label} runs again" if retry else f"{cell.label} is failed (its workers keep dying)"
        self.console.print(f"[yellow]! {reason}[/]: {what}", highlight=False)

    def finished(self, cell: Cell, result: CellResult) -> None:
        self.overall.advance(self.bar, 1)
