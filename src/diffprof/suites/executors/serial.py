"""`serial` (the default): one cell after another in this process.

Cells sharing an engine key reuse one loaded pipeline (in sweep order, so the run reads like the
config). With ``isolate`` every cell runs in a fresh subprocess instead; a subprocess that dies
(not a cell that fails) is retried like a lost worker of the parallel executors.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffprof.results import CellResult
from diffprof.suites.base import Cell
from diffprof.suites.executors.base import Deaths, Executor, Intake, Listener, Results
from diffprof.suites.measure import now
from diffprof.suites.worker import CellWorker, WorkerDied

WORKER = "main"


class SerialExecutor(Executor):
    name = "serial"
    parallel = False

    def execute(self, cells: Sequence[Cell], listener: Listener) -> Results:
        listener.workers([WORKER])
        worker = CellWorker()
        deaths = Deaths()
        intake = Intake(cells)
        try:
            while todo := intake.new():  # cells appended while a result was read come next
                for cell in todo:
                    yield cell, self._run(worker, cell, deaths, listener)
        finally:
            worker.close()

    def _run(self, worker: CellWorker, cell: Cell, deaths: Deaths, listener: Listener) -> CellResult:
        started = now()
        while True:
            listener.started(WORKER, cell)
            try:
                return worker.run(cell)
            except WorkerDied as exc:
                failed = deaths.record(cell, str(exc), started)
                listener.lost(WORKER, cell, str(exc), retry=failed is None)
                if failed is not None:
                    return failed

    def describe(self) -> str:
        return "serial" + (" (each cell in a fresh process)" if self.config.isolate else "")
