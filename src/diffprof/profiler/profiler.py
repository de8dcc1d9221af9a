"""The profiler: opens and closes operations, nothing else.

``Profiler.profile_operation(name, category, **labels)`` is a context manager and a decorator.
Each thread keeps its own stack of open operations, so nesting (parent, depth) is per thread.
Measurement is delegated to trackers chosen by the level; formatting lives in exporters.

Levels, cheapest first:

========== ==============================================================================
off        records nothing; ``profile_operation`` returns a shared no-op object
minimal    wall time (``perf_counter_ns``) and nesting
standard   + host RSS; on CUDA also GPU time (CUDA events) and allocated/reserved memory with
           exact nested peaks
detailed   + NVTX ranges and a torch.profiler kernel capture (shapes, memory) per top-level
           operation, exported as Chrome trace JSON. On CUDA the capture leaves CUPTI attached
           for the rest of the process, which makes later launches dearer: see
           ``trackers.cupti_left_attached``
========== ==============================================================================
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import torch

from diffprof.clock import SYSTEM_CLOCK, Clock
from diffprof.errors import ProfilerError, unknown_choice
from diffprof.profiler.record import LEVELS, Level, OperationRecord, Profile
from diffprof.profiler.trackers import (
    CudaEventTracker,
    CudaMemoryTracker,
    HostMemoryTracker,
    NvtxTracker,
    RecordFunctionTracker,
    TorchProfilerTracker,
    Tracker,
)

F = TypeVar("F", bound=Callable[..., Any])


def check_level(level: str) -> Level:
    if level not in LEVELS:
        raise unknown_choice("profiler level", level, LEVELS, ProfilerError)
    return level  # type: ignore[return-value]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means the default CUDA device when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class _NullOperation:
    """What ``profile_operation`` returns at level ``off``: costs one attribute lookup."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False

    def __call__(self, func: F) -> F:
        return func

    def start(self) -> _NullOperation:
        return self

    def stop(self) -> None:
        return None


_NULL_OPERATION = _NullOperation()


class Operation:
    """One use of ``profile_operation``: enter it once (``with``), or decorate a function (each
    call then opens a fresh operation), or ``start()``/``stop()`` it by hand."""

    __slots__ = ("_profiler", "name", "category", "labels", "record", "memory")

    def __init__(self, profiler: Profiler, name: str, category: str, labels: dict[str, Any], memory: bool = True) -> None:
        self._profiler = profiler
        self.name = name
        self.category = category
        self.labels = labels
        self.memory = memory
        self.record: OperationRecord | None = None

    # ---------------------------------------------------------------- hot path
    def __enter__(self) -> OperationRecord:
        if self.record is not None:
            raise ProfilerError(
                f"operation {self.name!r} is already open",
                "each `with profile_operation(...)` opens once; call profile_operation again for a new one",
            )
        p = self._profiler
        stack = p._stack()
        parent = stack[-1] if stack else None
        thread = threading.current_thread()
        record = OperationRecord(
            next(p._ids),
            self.name,
            self.category,
            self.labels,
            thread.native_id or thread.ident or 0,  # the OS thread id, as torch.profiler's kernel traces name threads
            thread.name,
            parent.id if parent is not None else None,
            len(stack),
            0,
        )
        stack.append(record)
        self.record = record
        for tracker in p._trackers if self.memory else p._light_trackers:
            tracker.start(record)
        record.start_ns = p._clock()
        return record

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        p = self._profiler
        end = p._clock()
        record = self.record
        if record is None:
            raise ProfilerError(f"operation {self.name!r} was closed but never opened")
        record.wall_ns = end - record.start_ns
        stack = p._stack()
        if not stack or stack[-1] is not record:
            inner = stack[-1].name if stack else "nothing"
            raise ProfilerError(
                f"operation {self.name!r} closed out of order: {inner!r} opened inside it is still open",
                "close operations in the reverse order they were opened (prefer `with` blocks)",
            )
        for tracker in p._reversed_trackers if self.memory else p._reversed_light_trackers:
            tracker.stop(record)
        stack.pop()
        if exc_type is not None:
            record.error = f"{exc_type.__name__}: {exc}"
        with p._lock:
            p._records.append(record)
        self.record = None
        return False

    # ------------------------------------------------------------ other forms
    def start(self) -> Operation:
        self.__enter__()
        return self

    def stop(self) -> OperationRecord:
        record = self.record
        self.__exit__(None, None, None)
        assert record is not None
        return record

    def __call__(self, func: F) -> F:
        profiler, name, category, labels, memory = self._profiler, self.name, self.category, self.labels, self.memory

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Operation(profiler, name, category, dict(labels), memory):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class Profiler:
    """Records nested, labelled operations at a chosen level of detail.

    Args:
        level (`str`, defaults to ``"standard"``): ``off``, ``minimal``, ``standard`` or ``detailed``.
        device (`str`, *optional*): where GPU time and memory are read; defaults to the current CUDA
            device when there is one, else the CPU (wall time and host memory only).
        clock (`Clock`, *optional*): nanosecond clock (default ``time.perf_counter_ns``); tests inject a
            :class:`~diffprof.clock.FakeClock`.
        trace_dir (`str`, *optional*): where ``detailed`` writes kernel traces (default ``./diffprof-traces``).
        measure_overhead (`bool`, defaults to ``True``): time this level's own per-operation cost
            once, when results are first read, so every profile states its overhead.
    """

    def __init__(
        self,
        level: str = "standard",
        *,
        device: str | torch.device | None = None,
        clock: Clock | None = None,
        trace_dir: str | Path | None = None,
        measure_overhead: bool = True,
    ) -> None:
        self.level: Level = check_level(level)
        self.device = resolve_device(device)
        self._clock: Clock = clock or SYSTEM_CLOCK
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._records: list[OperationRecord] = []
        self._measure_overhead = measure_overhead
        self._overhead_ns: float | None = None
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # One reading of this profiler's clock beside the Unix clock: traces place every span on
        # the Unix time base torch.profiler's kernel traces use, so both line up on one timeline.
        self.clock_sync = {"clock_ns": self._clock(), "unix_ns": time.time_ns()}
        self._trace_dir = Path(trace_dir) if trace_dir is not None else Path("diffprof-traces")
        self._trackers = self._build_trackers()
        self._reversed_trackers = list(reversed(self._trackers))
        # Allocator statistics cost ~30 µs a read on CUDA; per-step operations skip them.
        self._light_trackers = [t for t in self._trackers if not isinstance(t, CudaMemoryTracker)]
        self._reversed_light_trackers = list(reversed(self._light_trackers))

    def _build_trackers(self) -> list[Tracker]:
        if self.level in ("off", "minimal"):
            return []
        cuda = self.device.type == "cuda"
        trackers: list[Tracker] = []
        if self.level == "detailed":
            trackers.append(TorchProfilerTracker(self.device, self._trace_dir))
            trackers.append(RecordFunctionTracker())
            if cuda:
                trackers.append(NvtxTracker())
        trackers.append(HostMemoryTracker())
        if cuda:
            trackers.append(CudaMemoryTracker(self.device))
            trackers.append(CudaEventTracker(self.device, self._clock))  # last: closest to the user's code
        return trackers

    def _stack(self) -> list[OperationRecord]:
        try:
            return self._local.stack  # type: ignore[no-any-return]
        except AttributeError:
            self._local.stack = []
            return self._local.stack  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ public
    @property
    def clock(self) -> Clock:
        """The clock records are timed with (an engine reads its call totals from the same one)."""
        return self._clock

    @property
    def enabled(self) -> bool:
        return self.level != "off"

    def profile_operation(self, name: str, category: str = "default", *, memory: bool = True, **labels: Any) -> Operation:
        """Open an operation: ``with profiler.profile_operation("unet_step", "model_inference", step=3):``.

        Also a decorator (``@profiler.profile_operation("load", "model_loading")``) and, through
        ``.start()``/``.stop()``, usable where a ``with`` block does not fit. ``memory=False``
        skips the CUDA allocator reads (the costliest part of ``standard``) for operations so
        frequent that their memory is better read off their parent, such as denoising steps;
        the parent's peak still includes them.
        """
        if self.level == "off":
            return _NULL_OPERATION  # type: ignore[return-value]
        return Operation(self, name, category, labels, memory)

    def start(self, name: str, category: str = "default", *, memory: bool = True, **labels: Any) -> Operation:
        """Open an operation by hand; close it with ``.stop()`` in the reverse order of opening."""
        return self.profile_operation(name, category, memory=memory, **labels).start()

    def current(self) -> OperationRecord | None:
        """The innermost operation open on this thread, if any."""
        stack = self._stack()
        return stack[-1] if stack else None

    @property
    def records(self) -> list[OperationRecord]:
        """Finished records so far (GPU times may still be unresolved; use :meth:`profile`)."""
        with self._lock:
            return list(self._records)

    def resolve(self) -> None:
        """Synchronize once and finish deferred measurements (CUDA event times)."""
        if self.device.type == "cuda" and self._records:
            torch.cuda.synchronize(self.device)
        records = self.records
        for tracker in self._trackers:
            tracker.resolve(records)

    def profile(self) -> Profile:
        """Everything recorded so far as a :class:`Profile` (one synchronize on CUDA)."""
        self.resolve()
        if self._measure_overhead and self._overhead_ns is None and self.level != "off":
            self._overhead_ns = measure_overhead(self.level, self.device)
        traces: list[str] = []
        metadata: dict[str, Any] = {"torch": torch.__version__, "pid": os.getpid(), "clock_sync": dict(self.clock_sync)}
        for tracker in self._trackers:
            traces += getattr(tracker, "trace_files", [])
            if isinstance(tracker, CudaEventTracker):
                metadata["gpu_reference_host_ns"] = tracker.reference_host_ns
        return Profile(
            level=self.level,
            device=str(self.device),
            records=self.records,
            started_at=self.started_at,
            overhead_ns_per_op=self._overhead_ns,
            metadata=metadata,
            trace_files=traces,
        )

    def reset(self) -> None:
        """Drop finished records (open operations are unaffected)."""
        with self._lock:
            self._records.clear()


def measure_overhead(level: str, device: str | torch.device | None = None, n: int | None = None, clock: Clock = SYSTEM_CLOCK) -> float:
    """Nanoseconds one empty operation costs at ``level`` on ``device`` (median of 5 batches).

    This is the profiler's own cost, the number subtracted mentally from every record; the
    ``benchmarks/profiler_overhead.py`` script prints it for each level. ``clock`` is for tests of
    the arithmetic: a profile states the real cost, read from the real clock.
    """
    level = check_level(level)
    if n is None:
        n = 20 if level == "detailed" else 1000
    profiler = Profiler(level, device=device, clock=clock, measure_overhead=False, trace_dir=None)
    if level == "detailed":
        for tracker in profiler._trackers:
            if isinstance(tracker, TorchProfilerTracker):
                tracker.trace_dir = None
    op = profiler.profile_operation
    batches = []
    for _ in range(5):
        t0 = clock()
        for _ in range(n):
            pass
        empty = clock() - t0
        t0 = clock()
        for _ in range(n):
            with op("overhead", "profiler"):
                pass
        batches.append(max(0.0, (clock() - t0 - empty) / n))
        profiler.resolve()  # returns CUDA events to the pool, outside the timed loop
        profiler.reset()
    batches.sort()
    return batches[len(batches) // 2]
