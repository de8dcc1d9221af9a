"""`ray`: cells spread over a Ray cluster, one actor per GPU (or per ``threads`` CPUs).

Each actor holds a :class:`~diffprof.suites.worker.CellWorker`, so it keeps its loaded pipeline
between cells of the same engine key, exactly like a ``local`` worker; the :class:`CellQueue` hands
it more cells of the key it holds. Results come back to this (the driver) process, which alone
writes the store, one cell at a time as each finishes.

``--ray-address`` connects to a running cluster (``auto``, ``HOST:6379`` or ``ray://HOST:10001``);
without it Ray starts a local one for the run (and stops it afterwards). Every node needs diffprof
and its dependencies installed (``pip install 'diffprof[ray]'``). A Ray session that the caller
already started (``ray.init`` in a script or a test) is used as it is and left running.

A lost actor (its process or node died) loses only its current cell, which runs again on a fresh
actor; ``DIFFPROF_*`` variables of the driver are passed to the actors.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any

from diffprof.config import RunConfig
from diffprof.errors import ConfigError, DiffprofError
from diffprof.results import CellResult
from diffprof.suites.base import Cell
from diffprof.suites.executors.base import CellQueue, Deaths, Executor, Intake, Listener, Results, Worker, dispatch, lose
from diffprof.suites.worker import failed_cell

#: Seconds actors get to start (import torch and diffusers on their node) before the run gives up.
START_TIMEOUT_S = 600.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray executor needs Ray, which is not installed", "pip install 'diffprof[ray]', or use --executor local") from exc
    return ray


class CellActor:
    """Runs cells inside a Ray actor (made remote at run time, so importing this needs no Ray)."""

    def __init__(self, index: int) -> None:
        import ray

        from diffprof.suites.worker import CellWorker

        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        node = ray.util.get_node_ip_address()
        self.worker = CellWorker(f"ray{index}@{node}" + (f"/gpu{gpus}" if gpus else ""), disposable=True)

    def ready(self) -> str:
        """Answers once the actor has started (imports done): where it runs."""
        return str(self.worker.name)

    def run(self, cell: Cell) -> tuple[str, Any]:
        """``("result", CellResult)``, or ``("died", reason)`` when an isolated cell's process died."""
        from diffprof.suites.worker import WorkerDied

        try:
            return "result", self.worker.run(cell)
        except WorkerDied as exc:
            return "died", str(exc)


class _Actor(Worker):
    """An actor, whether it has started yet, and the reference of the cell it is running."""

    def __init__(self, remote: Any, index: int) -> None:
        super().__init__(f"ray{index}")
        self.index = index
        self.handle = remote.remote(index)
        self.starting: Any = self.handle.ready.remote()  # the reference that resolves once it has started
        self.born = time.monotonic()
        self.ref: Any = None

    @property
    def available(self) -> bool:
        return self.starting is None and self.cell is None

    def submit(self, cell: Cell) -> None:
        self.ref = self.handle.run.remote(cell)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, config: RunConfig, workers: int | None = None, address: str | None = None) -> None:
        super().__init__(config)
        if re.fullmatch(r"cuda:\d+", config.device):
            raise ConfigError(
                f"device {config.device} pins one GPU, but Ray gives every actor its own GPU",
                "use --device cuda (or auto), or --executor serial for one card",
            )
        import_ray()  # fail before anything starts when Ray is missing
        self.workers = workers if workers is not None else config.workers
        self.address = address if address is not None else config.ray_address
        self.actor_names: list[str] = []
        self._plan: tuple[int, dict[str, Any]] | None = None
        self._started_here = False

    def check(self) -> None:
        """Connect to the cluster and size the actors, so a mismatch fails before the run starts."""
        if self._plan is None:
            ray = import_ray()
            self._started_here = self._connect(ray) or self._started_here
            try:
                self._plan = self._actor_options(ray)
            except BaseException:
                self._shutdown(ray)
                raise

    def _shutdown(self, ray: Any) -> None:
        """Stop the Ray session if this executor started it."""
        if self._started_here:
            ray.shutdown()
        self._started_here, self._plan = False, None

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
        if self._plan is None:
            return f"ray: actors on {where}"
        n, options = self._plan
        each = f"{options['num_gpus']} GPU" if "num_gpus" in options else f"{options['num_cpus']} CPU"
        return f"ray: {n} actor{'s' if n != 1 else ''} ({each} each) on {where}"

    # ------------------------------------------------------------------ cluster
    def _connect(self, ray: Any) -> bool:
        """Connect (or start a local cluster); True when this run started the Ray session."""
        if ray.is_initialized():
            return False
        debug = bool(os.environ.get("DIFFPROF_DEBUG"))
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=debug, logging_level="INFO" if debug else "WARNING")
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean "no cluster here"
            raise ConfigError(
                f"cannot connect to the Ray cluster at {self.address or 'a new local cluster'}: {exc}".splitlines()[0],
                "check --ray-address (auto, HOST:6379 or ray://HOST:10001) and that the cluster is up (`ray status`)",
            ) from exc
        return True

    def _actor_options(self, ray: Any) -> tuple[int, dict[str, Any]]:
        """How many actors, and the resources each asks for."""
        resources = ray.cluster_resources()
        c = self.config
        use_gpu = c.device.startswith("cuda") or (c.device == "auto" and resources.get("GPU", 0) >= 1)
        if use_gpu:
            have = int(resources.get("GPU", 0))
            if have < 1:
                raise ConfigError(f"device {c.device} needs GPUs, but the Ray cluster has none", "use --device cpu, or add GPU nodes")
            n = self.workers or have
            if n > have:
                raise ConfigError(f"{n} Ray actors need {n} GPUs, but the cluster has {have}", f"pass --workers {have} or fewer")
            options: dict[str, Any] = {"num_gpus": 1}
        else:
            per = c.threads or 1
            have = int(resources.get("CPU", 1))
            n = self.workers or max(1, have // per)
            if n * per > have:
                raise ConfigError(
                    f"{n} Ray actors of {per} CPU(s) need {n * per} CPUs, but the cluster has {have}", f"pass --workers {max(1, have // per)} or fewer"
                )
            options = {"num_cpus": per}
        env = {k: v for k, v in os.environ.items() if k.startswith(("DIFFPROF_", "TRANSFORMERS_", "DIFFUSERS_"))}
        if env:
            options["runtime_env"] = {"env_vars": env}
        options["max_restarts"] = 0  # a lost actor is replaced by the executor, which knows its cell
        return n, options

    # ------------------------------------------------------------------ running
    @staticmethod
    def _started(ray: Any, actor: _Actor) -> None:
        """An actor answered its start-up call: it is ready, or it could not start (an error)."""
        ref, actor.starting = actor.starting, None
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise DiffprofError(
                f"Ray actor {actor.name} could not start: {_last_line(exc)}",
                "every node needs diffprof installed (pip install 'diffprof[ray]'); DIFFPROF_DEBUG=1 shows the actor logs",
            ) from exc

    @staticmethod
    def _check_start_times(actors: Sequence[_Actor]) -> None:
        late = [a.name for a in actors if a.starting is not None and time.monotonic() - a.born > START_TIMEOUT_S]
        if late:
            raise DiffprofError(
                f"Ray actor{'s' if len(late) > 1 else ''} {', '.join(late)} did not start within {START_TIMEOUT_S:.0f} s",
                "the cluster may have no free GPUs/CPUs for them (`ray status`); pass fewer --workers",
            )

    def execute(self, cells: Sequence[Cell], listener: Listener) -> Results:
        ray = import_ray()
        actors: list[_Actor] = []
        intake = Intake(cells)
        first = intake.new()
        try:
            if not first:
                return
            self.check()
            assert self._plan is not None
            n, options = min(self._plan[0], len(first)), self._plan[1]
            remote = ray.remote(**options)(CellActor)
            actors = [_Actor(remote, i) for i in range(n)]  # they start side by side
            self.actor_names = [a.name for a in actors]
            listener.workers(self.actor_names)
            pending = CellQueue(first)
            deaths = Deaths()
            remaining = len(first)
            while remaining:
                waiting = {a.starting: a for a in actors if a.starting is not None}
                running = {a.ref: a for a in actors if a.ref is not None}
                if not waiting and not running:  # every loss with cells left starts a fresh actor
                    raise RuntimeError(f"no Ray actor is running or starting, yet {remaining} cells are unfinished")
                ready, _ = ray.wait([*waiting, *running], num_returns=1, timeout=0.5)
                done: list[tuple[Cell, CellResult]] = []
                for ref in ready:
                    if ref in waiting:
                        self._started(ray, waiting[ref])
                        continue
                    actor = running[ref]
                    cell, actor.ref = actor.take(), None
                    failed: CellResult | None = None
                    try:
                        kind, payload = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # an exception escaped the actor's own capture
                        done.append((cell, failed_cell(cell, f"Ray task failed: {_last_line(exc)}", actor.started)))
                        continue
                    except ray.exceptions.RayError as exc:  # the actor (its process or node) is gone
                        ray.kill(actor.handle, no_restart=True)
                        actors.remove(actor)
                        if (failed := lose(actor, cell, f"{actor.name} was lost: {_first_line(exc)}", pending, deaths, listener)) is not None:
                            done.append((cell, failed))
                        if len(pending):  # a fresh actor takes its place (and its name)
                            actors.append(_Actor(remote, actor.index))
                        continue
                    if kind == "result":
                        done.append((cell, payload))
                    elif (failed := lose(actor, cell, str(payload), pending, deaths, listener)) is not None:
                        done.append((cell, failed))
                self._check_start_times(actors)
                dispatch(actors, pending, listener)
                for pair in done:
                    remaining -= 1
                    yield pair
                if arrived := intake.new():  # appended while a result was read (tune's next cell)
                    for cell in arrived:
                        pending.add(cell)
                    remaining += len(arrived)
                    # an actor lost with nothing queued was not replaced then; it is now
                    held = {a.index for a in actors}
                    actors += [_Actor(remote, i) for i in range(n) if i not in held]
                    dispatch(actors, pending, listener)
        finally:
            for actor in actors:
                ray.kill(actor.handle, no_restart=True)
            self._shutdown(ray)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _last_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
