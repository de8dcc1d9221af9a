"""What ``diffprof calibrate`` does around the calibration suite: check each cell against the fit,
re-measure the ones it disagrees with, and say whether the host was quiet enough to trust.

1. The ``calibration`` suite runs as any sweep (:class:`~diffprof.suites.runner.Runner`: rounds
   interleaved across the cells, the host's state recorded with the run).
2. Every cell is predicted by the fit of the others (:func:`~diffprof.estimate.outliers.check_outliers`);
   a cell beyond the limit is measured once more, in fresh rounds, with the host's state tracked as
   another session of the same run. The measurement that agrees with the others' fit is kept (when
   neither does, the closer one), under the cell's own key; the cell's ``calibration_note`` says what
   happened and ``settings["retake"]`` keeps the other measurement.
3. The host's load over the whole run (:func:`~diffprof.analysis.machine.host_load`): a calibration
   measured while other processes took the cores is not used by ``estimate`` unless the run was
   forced (``--force``); the CLI refuses it with the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rich.console import Console

from diffprof.analysis.machine import HostLoad, host_load
from diffprof.config import RunConfig
from diffprof.errors import DiffprofError
from diffprof.estimate.calibration import Calibration, calibrations, point_from_cell
from diffprof.estimate.outliers import OutlierCheck, Residual, check_outliers
from diffprof.profiler.machine import MachineTracker
from diffprof.results import CALIBRATION_NOTE, CellResult
from diffprof.suites.base import Cell, expand
from diffprof.suites.executors import get_executor
from diffprof.suites.executors.base import Executor, Listener
from diffprof.suites.preflight import Preflight
from diffprof.suites.rounds import RoundPlan
from diffprof.suites.runner import RecordedRun, Runner, RunSummary, kept_on_interrupt
from diffprof.units import fmt_seconds


@dataclass(frozen=True)
class Retake:
    """A cell measured twice: the first measurement disagreed with the other cells' fit."""

    first: Residual
    second: Residual
    kept: Literal["first", "second"]

    @property
    def used(self) -> Residual:
        return self.first if self.kept == "first" else self.second

    @property
    def agrees(self) -> bool:
        return not self.used.outlier

    @property
    def note(self) -> str:
        first = (f"measured twice: the first measurement, {fmt_seconds(self.first.measured_s)} per call, was {self.first.ratio:.2f}x "
                 f"the {fmt_seconds(self.first.predicted_s)} the other cells predict; the second, {fmt_seconds(self.second.measured_s)} "
                 f"({self.second.ratio:.2f}x)")
        if self.agrees:
            return first + f", agrees, and the {self.kept} is used"
        return first + f", disagrees too: the closer ({self.kept}) is used, and the cost model may not describe this workload"


@dataclass
class CalibrationRun:
    """What a calibration measured and decided: the run, the cells measured twice, the host's load."""

    summary: RunSummary
    retakes: list[Retake] = field(default_factory=list)
    load: HostLoad = field(default_factory=lambda: HostLoad(recorded=False))
    checks: list[OutlierCheck] = field(default_factory=list)

    @property
    def run_id(self) -> int:
        return self.summary.run_id


def calibrate(config: RunConfig, store: Any, *, command: str = "", console: Console | None = None, progress: bool = True,
              executor: Executor | None = None, architecture: Any = None) -> CalibrationRun:
    """Measure ``config``'s calibration, re-measure its outliers, and judge the host (module docstring).

    ``executor`` and ``architecture`` stand in for the configured executor and the model's meta
    architecture (tests pass synthetic ones).
    """
    console = console or Console(stderr=True)
    runner = Runner(config, store, command=command, console=console, progress=progress, executor=executor)
    summary = runner.run()
    outcome = CalibrationRun(summary)
    try:
        for cal in calibrations(store, run=summary.run_id).values():
            try:
                check = check_outliers(cal, architecture)
            except (DiffprofError, ValueError, ArithmeticError) as exc:  # a fit that cannot be made is the estimate's error to report
                console.print(f"[yellow]the outlier check could not fit the calibration: {exc}[/]", highlight=False)
                continue
            outcome.checks.append(check)
            if check.outliers:
                outcome.retakes += _retake(config, store, summary.run_id, cal, check, executor, console)
    except KeyboardInterrupt as exc:  # during a retake: the run is stored whole; say so, as an interrupted run does
        stopped = kept_on_interrupt(exc, store, summary.run_id, len(summary.cells))
        if stopped is exc:
            raise
        raise stopped from None
    outcome.load = host_load(store.machine(summary.run_id))
    return outcome


def _retake(config: RunConfig, store: Any, run_id: int, cal: Calibration, check: OutlierCheck, executor: Executor | None,
            console: Console) -> list[Retake]:
    """Measure ``check``'s outliers once more in fresh rounds and store, per cell, the one kept."""
    stored = {c.id: c for c in store.get_run(run_id, artifacts=True).cells}
    first = {r.cell_id: r for r in check.outliers if r.cell_id in stored}
    plan = Preflight.for_config(config)
    by_key = {c.key: c for c in expand(plan.config)}
    cells = [by_key[stored[i].key] for i in first if stored[i].key in by_key]
    if not cells:
        return []
    console.print("measuring again, in fresh rounds: " + "; ".join(first[i].describe() for i in first), highlight=False, soft_wrap=True)
    tracker = MachineTracker()
    state = None
    try:
        with tracker.track() as state:
            again = measure(cells, executor or get_executor(config), plan, tracker)
    finally:
        if state is not None:  # filled in as the tracker's block exits, Ctrl-C included
            RecordedRun(store, run_id).add_machine(state)
    retakes = []
    for cell_id, residual in first.items():
        old = stored[cell_id]
        new = again.get(old.key)
        if new is None or not new.ok:
            continue
        second = check.judge(point_from_cell(replace(new, id=cell_id), cal.key.device))
        kept: Literal["first", "second"] = "first" if abs(residual.log_residual) < abs(second.log_residual) else "second"
        retake = Retake(residual, second, kept)
        chosen, other = (old, new) if kept == "first" else (new, old)
        settings = {**chosen.settings, CALIBRATION_NOTE: retake.note, "retake": _summary(other, "second" if kept == "first" else "first")}
        store.add_cell(run_id, replace(chosen, id=None, settings=settings, cell_key=old.key))
        retakes.append(retake)
    return retakes


def _summary(cell: CellResult, which: str) -> dict[str, Any]:
    """What a calibration cell keeps of the measurement it did not use."""
    return {"measurement": which, "s_per_call": cell.metrics.get("s_per_call"), "call_s": cell.samples.get("call_s", []),
            "rounds": cell.rounds.get("s_per_call", []), "started_at": cell.started_at, "finished_at": cell.finished_at}


def measure(cells: Sequence[Cell], executor: Executor, plan: Preflight, tracker: MachineTracker | None = None) -> dict[str, CellResult]:
    """``cells`` measured in fresh rounds interleaved across them (round 1 of each, then round 2 ...),
    merged per cell, by key; nothing is stored. The tracker is marked as each round ends."""
    rounds = RoundPlan(cells)
    todo = rounds.first()
    outstanding: Counter[int] = Counter(c.round.index if c.round else 1 for c in todo)
    done: dict[str, CellResult] = {}
    with closing(executor.execute(todo, Listener())) as results:
        for cell, result in results:
            merged, following = rounds.add(cell, plan.annotate(cell, result))
            index = cell.round.index if cell.round else 1
            outstanding[index] -= 1
            if following is not None:
                todo.append(following)
                outstanding[index + 1] += 1
            else:
                done[cell.key] = merged
            if tracker is not None and outstanding[index] == 0 and cell.round is not None:
                tracker.mark(f"retake round {index}")
    return done
