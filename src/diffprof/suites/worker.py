"""Running cells in one process: the engine cache, inline and isolated cells, and the worker loop.

Every executor ends up here. A cell runs *inline* (in this process, reusing the loaded engine while
the engine key stays the same), *isolated* (a fresh ``python -m diffprof.suites.worker`` per cell:
load time includes cold imports and disk reads, and peak memory cannot include an earlier cell's
leftovers), or *served*: ``python -m diffprof.suites.worker --serve`` is a long-lived worker of the
``local`` executor that reads cells and writes results as JSON lines (see :func:`serve`).

Any exception inside a cell becomes a failed :class:`CellResult`; only a dying process loses a cell,
and the executors notice that and run the cell again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import psutil
import torch

from diffprof.config import RunConfig
from diffprof.engine import Engine
from diffprof.engine.devices import resolve_engine_device
from diffprof.errors import DiffprofError
from diffprof.profiler import Profiler
from diffprof.results import CellResult
from diffprof.suites.base import Cell, Round
from diffprof.suites.measure import measure_cell, now

#: Test-only hook: a worker handed a cell whose label contains TEXT kills itself with SIGKILL, as
#: the out-of-memory killer or a driver crash would. The value is ``;``-separated entries: ``TEXT``
#: dies every time; ``TEXT@PATH`` only the first time (the worker that creates PATH). Serial inline
#: runs ignore it (they would kill the caller).
TEST_KILL_ENV = "DIFFPROF_TEST_KILL_CELL"
#: CPU engines an :class:`EngineCache` keeps loaded at most, and the share of host memory their
#: weights may take together.
CPU_ENGINES = 4
CPU_MEMORY_SHARE = 0.25


class WorkerDied(Exception):
    """The process running a cell vanished (killed, crashed); the cell itself did not report."""


def error_text(exc: BaseException) -> str:
    if isinstance(exc, DiffprofError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def failed_cell(cell: Cell, exc_text: str, started: str) -> CellResult:
    return CellResult(cell.suite, cell.labels, cell.settings, status="failed", error=exc_text, started_at=started, finished_at=now())


class EngineCache:
    """Loaded engines by engine key, so cells (and the rounds of cells) that share a pipeline reuse it.

    Rounds interleave a run's cells, so a sweep over pipelines (the memory suite's switches, the
    pipelines suite) comes back to each engine once per round. On the CPU several engines stay
    loaded (up to :data:`CPU_ENGINES`, and together under :data:`CPU_MEMORY_SHARE` of the host's
    memory; least recently used goes first): a reload would cost more than the measurement. On a
    GPU one engine is loaded at a time, as before rounds: a cell's device-memory peak must be its
    own pipeline's, GPU memory is what the sweep is about, and switches such as ``cudnn_benchmark``
    hold process-global settings for as long as their engine lives.
    """

    def __init__(self, profile_level: str = "standard") -> None:
        self.profile_level = profile_level
        self._engines: OrderedDict[tuple[Any, ...], Engine] = OrderedDict()
        self._quality: dict[str | None, Any] = {}

    @property
    def engine(self) -> Engine | None:
        """The engine used last (None when none is loaded)."""
        return next(reversed(self._engines.values()), None)

    @property
    def keys(self) -> list[tuple[Any, ...]]:
        """Engine keys loaded now, least recently used first."""
        return list(self._engines)

    def quality(self, config: RunConfig) -> Any:
        """One QualityCache per reference folder for this worker's life: reference solves and
        CLIP models are shared by every cell that needs them, not recomputed per cell."""
        from diffprof.quality.scoring import QualityCache

        folder = config.reference_cache
        if folder not in self._quality:
            self._quality[folder] = QualityCache(folder)
        return self._quality[folder]

    def get(self, cell: Cell) -> tuple[Engine, bool]:
        key = cell.engine_key
        if key in self._engines:
            self._engines.move_to_end(key)
            return self._engines[key], True
        c = cell.config
        device = resolve_engine_device(c.device)
        if device.type != "cpu" or any(e.device.type != "cpu" for e in self._engines.values()):
            self.drop()
        kernels = Path(c.trace) / "kernels" if c.trace else None  # detailed captures beside the cells' traces
        profiler = Profiler(c.profile_level, device=device, measure_overhead=False, trace_dir=kernels)
        engine = Engine.load(
            c.model, c.weights, device=c.device, precision=c.precision, optimize=c.optimize, profiler=profiler, seed=c.seed, allow_pickle=c.allow_pickle
        )
        self._engines[key] = engine
        self._evict()
        return engine, False

    def _evict(self) -> None:
        """Close the least recently used engines beyond the CPU limits (never the newest)."""
        budget = CPU_MEMORY_SHARE * psutil.virtual_memory().total
        while len(self._engines) > 1:
            sizes = [engine_bytes(e) for e in self._engines.values()]
            if len(self._engines) <= CPU_ENGINES and sum(sizes) <= budget:
                return
            _, oldest = self._engines.popitem(last=False)
            release(oldest)

    def drop(self) -> None:
        """Close every loaded engine."""
        while self._engines:
            _, engine = self._engines.popitem(last=False)
            release(engine)


def release(engine: Engine) -> None:
    """Close an engine so that its memory really goes. Engines are never frozen (only what the
    process held before its first load is: :func:`~diffprof.engine.devices.clean`): the collector
    never frees frozen objects, and the cycles a pipeline holds (module hooks) once kept a closed
    engine's denoiser alive: on the H200 a FLUX.1-dev held-out cell after a calibration in the same
    process peaked at 55 GiB, its own 33 GiB plus the closed engine's 22 GiB transformer."""
    engine.close()  # its clean() collects


def engine_bytes(engine: Engine) -> int:
    """Bytes of the parameters and buffers of an engine's pipeline modules."""
    total = 0
    for module in (getattr(engine.base, "components", None) or {}).values():
        if isinstance(module, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    return total


def run_cell_inline(cell: Cell, cache: EngineCache) -> CellResult:
    """Measure one cell in this process; any exception becomes a failed cell."""
    started = now()
    try:
        engine, reused = cache.get(cell)
        result = measure_cell(engine, cell, reused_engine=reused, quality=cache.quality(cell.config))
        engine.profiler.reset()  # records are summarized into the cell; don't grow without bound
        return result
    except Exception as exc:  # noqa: BLE001 - a cell's failure is data, not a crash
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            cache.drop()  # the engine may hold fragments; start the next cell clean
        if os.environ.get("DIFFPROF_DEBUG"):
            traceback.print_exc()
        return failed_cell(cell, error_text(exc), started)


def cell_message(cell: Cell) -> dict[str, Any]:
    """A cell as plain JSON data (what crosses a process boundary), with its round when it has one."""
    message = {"suite": cell.suite, "labels": cell.labels, "config": asdict(cell.config)}
    if cell.round is not None:
        message["round"] = asdict(cell.round)
    return message


def cell_from_message(data: dict[str, Any]) -> Cell:
    measured = data.get("round")
    return Cell(data["suite"], data["labels"], RunConfig(**data["config"]), Round(**measured) if measured else None)


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process: ours, plus this diffprof first on the import path
    (a worker must run the same code as its parent, even when that code is not installed)."""
    import diffprof

    root = str(Path(diffprof.__file__).resolve().parents[1])
    env = dict(os.environ, **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]])
    return env


def run_cell_isolated_once(cell: Cell, timeout_s: float | None = None) -> CellResult:
    """One attempt in a fresh process; raises :class:`WorkerDied` when that process dies."""
    proc = subprocess.run(
        [sys.executable, "-m", "diffprof.suites.worker"],
        input=json.dumps(cell_message(cell)), capture_output=True, text=True, timeout=timeout_s, env=worker_env(), check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:400]
        raise WorkerDied(f"isolated worker exited with code {proc.returncode}" + (f": {tail}" if tail else ""))
    return cell_from_json(json.loads(proc.stdout.strip().splitlines()[-1]))


def cell_to_json(cell: CellResult) -> dict[str, Any]:
    """A measured cell as the JSON a worker writes (artifacts included)."""
    return cell.to_dict(with_artifacts=True)


def cell_from_json(data: dict[str, Any]) -> CellResult:
    """A worker's JSON back into the cell, checked field by field (:meth:`CellResult.from_dict`)."""
    return CellResult.from_dict(data)


def die_if_test_asks(cell: Cell) -> None:
    """Honour :data:`TEST_KILL_ENV` (tests of lost workers); a no-op unless that variable is set."""
    for entry in filter(None, os.environ.get(TEST_KILL_ENV, "").split(";")):
        text, _, marker = entry.partition("@")
        if text not in cell.label:
            continue
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue  # a worker already died for this cell once
        os.kill(os.getpid(), signal.SIGKILL)


class CellWorker:
    """Runs cells one after another in this process, keeping the engine between same-key cells.

    The serial executor holds one in the caller's process; the ``local`` worker processes and the
    ``ray`` actors hold one each (``disposable``: the process exists only to run cells, so the
    test hook :data:`TEST_KILL_ENV` may kill it). ``name`` (e.g. ``gpu1``) is stored in each
    result's settings as ``worker``, so a cell can be traced to the card that ran it.
    """

    def __init__(self, name: str | None = None, *, disposable: bool = False) -> None:
        self.name = name
        self.disposable = disposable
        self.cache = EngineCache()

    def run(self, cell: Cell) -> CellResult:
        """Measure ``cell``; raises :class:`WorkerDied` only when an isolated cell's process died."""
        if cell.config.threads:
            torch.set_num_threads(cell.config.threads)
        if cell.config.isolate:
            result = run_cell_isolated_once(cell)  # the child honours the test hook itself
        else:
            if self.disposable:
                die_if_test_asks(cell)
            result = run_cell_inline(cell, self.cache)
        if self.name:
            result.settings["worker"] = self.name
        return result

    def close(self) -> None:
        self.cache.drop()


# ---------------------------------------------------------------- worker processes
def _protocol_stdout() -> IO[str]:
    """Keep the real stdout for protocol lines and point fd 1 at stderr, so a library's print
    cannot corrupt the channel."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return channel


def serve(name: str | None = None) -> int:
    """The ``local`` executor's worker loop.

    Protocol, one JSON object per line: the worker writes ``{"ready": PID}`` once imports are done,
    then for every ``{"cell": CELL}`` it reads on stdin it writes ``{"result": CELLRESULT}`` (or
    ``{"died": REASON}`` when an isolated cell's own process died). ``{"stop": true}`` or the end of
    stdin ends the loop.
    """
    channel = _protocol_stdout()
    worker = CellWorker(name, disposable=True)
    channel.write(json.dumps({"ready": os.getpid()}) + "\n")
    try:
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("stop"):
                break
            cell = cell_from_message(message["cell"])
            try:
                reply: dict[str, Any] = {"result": cell_to_json(worker.run(cell))}
            except WorkerDied as exc:
                reply = {"died": str(exc)}
            channel.write(json.dumps(reply) + "\n")
    except BrokenPipeError:  # the parent is gone; nothing left to report to
        pass
    finally:
        worker.close()
    return 0


def _serve_and_exit(name: str | None) -> None:
    """Serve, then leave without interpreter teardown: a worker holds nothing to clean up (the
    parent writes the store), and unloading torch and diffusers takes 1-2 s per worker."""
    try:
        code = serve(name)
    except BaseException:  # noqa: BLE001 - report it (the parent shows the last line), then leave
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def main() -> int:
    """``--serve [--name NAME]``: the local executor's worker loop (:func:`serve`). Otherwise
    isolated mode: one cell as JSON on stdin, its CellResult as one JSON line on stdout."""
    from diffprof.profiler.samplers import process_peak_rss

    # Ctrl-C reaches the whole process group; the parent decides (it stops its workers and says what
    # it kept), so a worker does not answer it with a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "--serve" in sys.argv[1:]:
        args = sys.argv[1:]
        name = args[args.index("--name") + 1] if "--name" in args else None
        _serve_and_exit(name)
    cell = cell_from_message(json.loads(sys.stdin.read()))
    die_if_test_asks(cell)
    if cell.config.threads:
        torch.set_num_threads(cell.config.threads)
    result = run_cell_inline(cell, EngineCache(cell.config.profile_level))
    if result.ok:
        result.metrics["host_peak_rss_bytes"] = float(max(result.metrics.get("host_peak_rss_bytes", 0), process_peak_rss()))
        result.settings["isolated"] = True
    sys.stdout.write(json.dumps(cell_to_json(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
