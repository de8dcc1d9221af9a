"""Trackers: each measures one thing around an operation.

A tracker is a small class with ``start(record)`` and ``stop(record)`` (called by the profiler in
the hot path, so they stay allocation-light) and ``track(record)``, a context manager with
``try/finally`` for use on its own. Trackers that defer work (CUDA events) finish it in
``resolve(records)``, which the profiler calls once, after one synchronize, when results are read.

The profiler starts trackers in list order and stops them in reverse, so the cheapest and most
time-critical tracker (CUDA events) sits last: it is recorded closest to the user's code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from diffprof.clock import SYSTEM_CLOCK, Clock
from diffprof.profiler.record import OperationRecord


class Tracker:
    """Base contract; subclasses override what they measure."""

    def start(self, record: OperationRecord) -> None:  # pragma: no cover - interface
        pass

    def stop(self, record: OperationRecord) -> None:  # pragma: no cover - interface
        pass

    def resolve(self, records: list[OperationRecord]) -> None:
        """Finish deferred measurements; called after one device synchronize."""

    @contextmanager
    def track(self, record: OperationRecord) -> Iterator[OperationRecord]:
        self.start(record)
        try:
            yield record
        finally:
            self.stop(record)


# --------------------------------------------------------------------------- host memory
class HostMemoryTracker(Tracker):
    """Resident set size at start and end, read from ``/proc/self/statm`` (about 1 µs; psutil
    takes ~9 µs, which would blow the ``standard`` level's budget on per-step operations)."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:
            self._fd: int | None = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:  # not Linux: fall back to psutil
            import psutil

            self._fd = None
            self._proc = psutil.Process()

    def rss(self) -> int:
        if self._fd is not None:
            return int(os.pread(self._fd, 64, 0).split()[1]) * self._page
        return int(self._proc.memory_info().rss)

    def start(self, record: OperationRecord) -> None:
        record.rss_start = self.rss()

    def stop(self, record: OperationRecord) -> None:
        record.rss_end = self.rss()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------- CUDA time
class CudaEventTracker(Tracker):
    """GPU time from a pair of CUDA events recorded on the current stream.

    Recording an event is asynchronous; nothing synchronizes inside the measured region. The
    events are resolved in :meth:`resolve` after the profiler's single synchronize, then returned
    to a pool so steady-state profiling allocates no new events.
    """

    def __init__(self, device: torch.device, clock: Clock | None = None) -> None:
        self.device = device
        self._pool: list[Any] = []
        self._lock = threading.Lock()
        # A reference event recorded right after a synchronize, with the host clock read beside
        # it: GPU spans can then be placed on the host timeline (Chrome trace's GPU lane).
        torch.cuda.synchronize(device)
        self._reference = torch.cuda.Event(enable_timing=True)
        self._reference.record()
        self.reference_host_ns = (clock or SYSTEM_CLOCK)()

    def _event(self) -> Any:
        with self._lock:
            if self._pool:
                return self._pool.pop()
        return torch.cuda.Event(enable_timing=True)

    def start(self, record: OperationRecord) -> None:
        start = self._event()
        end = self._event()
        record._events = (start, end)
        start.record()

    def stop(self, record: OperationRecord) -> None:
        record._events[1].record()

    def resolve(self, records: list[OperationRecord]) -> None:
        freed = []
        for r in records:
            if r._events is None:
                continue
            start, end = r._events
            r.gpu_ns = round(start.elapsed_time(end) * 1e6)
            r.gpu_start_ns = round(self._reference.elapsed_time(start) * 1e6)
            r._events = None
            freed += (start, end)
        with self._lock:
            self._pool.extend(freed)


# --------------------------------------------------------------------------- CUDA memory
class _PeakFrame:
    __slots__ = ("allocated", "reserved")

    def __init__(self, allocated: int, reserved: int) -> None:
        self.allocated = allocated
        self.reserved = reserved


class _DevicePeaks:
    """The caching allocator keeps one peak counter per device, shared by every thread and every
    profiler, so the frames that fold into it must be shared too: one instance per device."""

    _instances: dict[int, _DevicePeaks] = {}
    _instances_lock = threading.Lock()

    def __init__(self, index: int) -> None:
        self.index = index
        self.lock = threading.Lock()
        self.open: dict[int, _PeakFrame] = {}

    @classmethod
    def for_device(cls, index: int) -> _DevicePeaks:
        with cls._instances_lock:
            if index not in cls._instances:
                cls._instances[index] = cls(index)
            return cls._instances[index]

    def read(self) -> tuple[int, int, int, int]:
        """(allocated, allocated peak, reserved, reserved peak) in one allocator call."""
        raw = getattr(torch._C, "_cuda_memoryStats", None)
        if raw is not None:  # the nested dict: ~10x cheaper than memory_stats() flattening it
            stats = raw(self.index)
            a, r = stats["allocated_bytes"]["all"], stats["reserved_bytes"]["all"]
            return a["current"], a["peak"], r["current"], r["peak"]
        flat = torch.cuda.memory_stats(self.index)
        return (
            flat.get("allocated_bytes.all.current", 0),
            flat.get("allocated_bytes.all.peak", 0),
            flat.get("reserved_bytes.all.current", 0),
            flat.get("reserved_bytes.all.peak", 0),
        )

    def _fold(self, peak_allocated: int, peak_reserved: int) -> None:
        for frame in self.open.values():
            if peak_allocated > frame.allocated:
                frame.allocated = peak_allocated
            if peak_reserved > frame.reserved:
                frame.reserved = peak_reserved


class CudaMemoryTracker(Tracker):
    """Allocated/reserved memory at start and end, and the peak inside the operation.

    Nesting is exact by *fold-and-reset*: the device has one peak counter. When an operation
    opens, the counter's current peak is first folded into every operation still open (their
    running maxima), then the counter is reset so the new operation sees only its own peak. When
    an operation closes, its peak is max(its running maximum, the counter) and is folded into the
    operations still open. So a child's reset never loses a parent's earlier peak, and a parent's
    peak always includes its children's. Operations open concurrently on other threads share the
    device, so their peaks include each other's allocations: that is what the device saw.

    Calling ``torch.cuda.reset_peak_memory_stats`` yourself inside a profiled operation loses the
    part of the peak before your reset; diffprof's runners never do this while profiling.
    """

    def __init__(self, device: torch.device) -> None:
        index = device.index if device.index is not None else torch.cuda.current_device()
        self._peaks = _DevicePeaks.for_device(index)

    def start(self, record: OperationRecord) -> None:
        peaks = self._peaks
        with peaks.lock:
            allocated, peak_a, reserved, peak_r = peaks.read()
            peaks._fold(peak_a, peak_r)
            torch.cuda.reset_peak_memory_stats(peaks.index)
            peaks.open[record.id] = _PeakFrame(allocated, reserved)
        record.allocated_start = allocated
        record.reserved_start = reserved

    def stop(self, record: OperationRecord) -> None:
        peaks = self._peaks
        with peaks.lock:
            allocated, peak_a, reserved, peak_r = peaks.read()
            frame = peaks.open.pop(record.id)
            frame.allocated = max(frame.allocated, peak_a, allocated)
            frame.reserved = max(frame.reserved, peak_r, reserved)
            peaks._fold(frame.allocated, frame.reserved)
        record.allocated_end = allocated
        record.reserved_end = reserved
        record.allocated_peak = frame.allocated
        record.reserved_peak = frame.reserved


# --------------------------------------------------------------------------- detailed
class NvtxTracker(Tracker):
    """NVTX ranges named ``category/name`` so Nsight Systems shows diffprof's operations."""

    def start(self, record: OperationRecord) -> None:
        torch.cuda.nvtx.range_push(f"{record.category}/{record.name}")

    def stop(self, record: OperationRecord) -> None:
        torch.cuda.nvtx.range_pop()


class RecordFunctionTracker(Tracker):
    """Names each operation inside torch.profiler's trace, so kernels sit under diffprof's spans."""

    def __init__(self) -> None:
        self._open: dict[int, Any] = {}

    def start(self, record: OperationRecord) -> None:
        rf = torch.profiler.record_function(f"{record.category}/{record.name}")
        rf.__enter__()
        self._open[record.id] = rf

    def stop(self, record: OperationRecord) -> None:
        self._open.pop(record.id).__exit__(None, None, None)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Kineto prints a USDT line to fd 2 at every profiler start/stop and has no switch for it."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


#: Set when a CUDA kernel capture ended with CUPTI left attached (Kineto's default): from then on
#: every kernel launch in this process costs more, so later timings are not a fresh process's.
_cupti_left_attached = False


def cupti_left_attached() -> bool:
    """Whether a ``detailed`` kernel capture earlier in this process left CUPTI attached.

    Kineto keeps CUPTI attached after a ``torch.profiler`` session unless ``TEARDOWN_CUPTI=1``, and
    attached it taxes every later kernel launch: SD 1.5's eager pipeline ran 1.58x slower after one
    ``detailed`` call (H100, ``benchmarks/gpu_cupti_teardown.py``). diffprof does not ask for the
    teardown: with it, a capture that starts soon after another recorded no kernels at all (H100,
    CUDA 13.0, torch 2.11), which would break ``detailed`` itself. So the engine flags what it
    measures after such a capture instead (``results.TIMING_NOTE``).
    """
    return _cupti_left_attached


def _note_capture_end() -> None:
    global _cupti_left_attached
    if os.environ.get("TEARDOWN_CUPTI") != "1":
        _cupti_left_attached = True


class TorchProfilerTracker(Tracker):
    """Kernel-level capture (shapes, memory) with ``torch.profiler`` around each top-level
    operation; the trace is exported as Chrome JSON into ``trace_dir``."""

    def __init__(self, device: torch.device, trace_dir: Path | None) -> None:
        self.device = device
        self.trace_dir = trace_dir
        self.trace_files: list[str] = []
        self._lock = threading.Lock()
        self._depth = 0
        self._prof: Any = None
        self._root: OperationRecord | None = None

    def start(self, record: OperationRecord) -> None:
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._prof = torch.profiler.profile(activities=activities, record_shapes=True, profile_memory=True)
            self._root = record
            with _quiet_stderr():
                self._prof.__enter__()

    def stop(self, record: OperationRecord) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth > 0 or self._prof is None:
                return
            prof, self._prof = self._prof, None
            with _quiet_stderr():
                prof.__exit__(None, None, None)
            if self.device.type == "cuda":
                _note_capture_end()
            if self.trace_dir is not None:
                self.trace_dir.mkdir(parents=True, exist_ok=True)
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.name)
                path = self.trace_dir / f"kernels-{record.id:05d}-{safe}.json"
                prof.export_chrome_trace(str(path))
                self.trace_files.append(str(path))
                record.labels.setdefault("kernel_trace", str(path))
            self.last_profile = prof
