"""Run cells, keep going on failure, store each cell the moment it finishes.

Cells that share an engine key (model, weights, device, precision, optimizations) reuse one
loaded pipeline; ``isolate=True`` runs every cell in a fresh subprocess instead, so load time and
peak memory are the cell's own. A failing cell (out of memory, invalid combination) is stored as
``failed`` with its reason and the run goes on; ``--resume RUN`` skips cells already ``ok``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from diffprof.config import RunConfig
from diffprof.engine import Engine
from diffprof.errors import DiffprofError
from diffprof.profiler import Profiler
from diffprof.results import CellResult
from diffprof.suites.base import Cell, expand
from diffprof.suites.measure import measure_cell, now


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


def error_text(exc: BaseException) -> str:
    if isinstance(exc, DiffprofError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def failed_cell(cell: Cell, exc_text: str, started: str) -> CellResult:
    return CellResult(cell.suite, cell.labels, cell.settings, status="failed", error=exc_text, started_at=started, finished_at=now())


class EngineCache:
    """Holds the one loaded engine; loads another only when the engine key changes."""

    def __init__(self, profile_level: str) -> None:
        self.profile_level = profile_level
        self.key: tuple[Any, ...] | None = None
        self.engine: Engine | None = None

    def get(self, cell: Cell) -> tuple[Engine, bool]:
        if self.engine is not None and self.key == cell.engine_key:
            return self.engine, True
        self.drop()
        c = cell.config
        profiler = Profiler(c.profile_level, device=_device_for(c), measure_overhead=False)
        self.engine = Engine.load(
            c.model, c.weights, device=c.device, precision=c.precision, optimize=c.optimize, profiler=profiler, seed=c.seed, allow_pickle=c.allow_pickle
        )
        self.key = cell.engine_key
        return self.engine, False

    def drop(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.key = None


def _device_for(config: RunConfig) -> torch.device:
    from diffprof.engine.engine import resolve_engine_device

    return resolve_engine_device(config.device)


def run_cell_inline(cell: Cell, cache: EngineCache) -> CellResult:
    """Measure one cell in this process; any exception becomes a failed cell."""
    started = now()
    try:
        engine, reused = cache.get(cell)
        result = measure_cell(engine, cell, reused_engine=reused)
        engine.profiler.reset()  # records are summarized into the cell; don't grow without bound
        return result
    except Exception as exc:  # noqa: BLE001 - a cell's failure is data, not a crash
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            cache.drop()  # the engine may hold fragments; start the next cell clean
        if os.environ.get("DIFFPROF_DEBUG"):
            traceback.print_exc()
        return failed_cell(cell, error_text(exc), started)


def run_cell_isolated(cell: Cell, timeout_s: float | None = None) -> CellResult:
    """Measure one cell in a fresh Python process (``python -m diffprof.suites.worker``)."""
    started = now()
    payload = json.dumps({"suite": cell.suite, "labels": cell.labels, "config": asdict(cell.config)})
    proc = subprocess.run(
        [sys.executable, "-m", "diffprof.suites.worker"], input=payload, capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:400]
        return failed_cell(cell, f"isolated worker exited with code {proc.returncode}: {tail}", started)
    return cell_from_json(json.loads(proc.stdout.strip().splitlines()[-1]))


def cell_to_json(cell: CellResult) -> dict[str, Any]:
    return cell.to_dict(with_artifacts=True)


def cell_from_json(data: dict[str, Any]) -> CellResult:
    artifacts = {k: base64.b64decode(v) for k, v in data.get("artifacts", {}).items()}
    return CellResult(
        suite=data["suite"], labels=data["labels"], settings=data["settings"], status=data["status"], error=data.get("error"),
        metrics=data.get("metrics", {}), samples=data.get("samples", {}), artifacts=artifacts,
        started_at=data.get("started_at", ""), finished_at=data.get("finished_at", ""),
    )


class Runner:
    """Expand the config into cells, run them (serially, or isolated), store each as it ends."""

    def __init__(
        self,
        config: RunConfig,
        store: Any,
        *,
        command: str = "",
        console: Console | None = None,
        progress: bool = True,
        on_cell: Callable[[CellResult], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.command = command
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.on_cell = on_cell

    def cells(self) -> list[Cell]:
        return expand(self.config)

    def run(self, resume: int | str | None = None) -> RunSummary:
        from diffprof.environment import capture_environment

        cells = self.cells()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        if not self.config.use_diffusion:
            from diffprof.errors import ConfigError

            raise ConfigError("use_diffusion is false: there is nothing to benchmark", "set use_diffusion: true (or remove it)")
        if resume is not None:
            run_id = self.store.resume_run(resume)
            done = self.store.finished_keys(run_id)
        else:
            run_id = self.store.create_run(self.command, self.config.to_dict(), capture_environment())
            done = set()
        summary = RunSummary(run_id=run_id)
        todo = [c for c in cells if c.key not in done]
        summary.skipped = len(cells) - len(todo)
        t0 = time.perf_counter()
        status = "interrupted"
        cache = EngineCache(self.config.profile_level)
        try:
            for cell, result in self._execute(todo, cache):
                result.id = self.store.add_cell(run_id, result)
                summary.cells.append(result)
                if result.ok:
                    summary.ok += 1
                else:
                    summary.failed += 1
                    self.console.print(f"[red]✗ {cell.label}[/]: {result.error}", highlight=False)
                if self.on_cell:
                    self.on_cell(result)
            status = "finished"
        finally:
            cache.drop()
            summary.seconds = time.perf_counter() - t0
            self.store.finish_run(run_id, status)
        return summary

    def _execute(self, cells: list[Cell], cache: EngineCache) -> Iterator[tuple[Cell, CellResult]]:
        with self._progress(len(cells)) as advance:
            for cell in cells:
                advance(cell.label, 0)
                if self.config.isolate:
                    result = run_cell_isolated(cell)
                else:
                    result = run_cell_inline(cell, cache)
                advance(cell.label, 1)
                yield cell, result

    @contextmanager
    def _progress(self, total: int) -> Iterator[Callable[[str, int], None]]:
        columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, disable=not self.show_progress) as progress:
            task = progress.add_task("cells", total=total)
            yield lambda label, n: progress.update(task, description=label, advance=n)
