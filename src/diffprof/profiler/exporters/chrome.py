"""Chrome trace JSON (the Trace Event Format) for Perfetto (ui.perfetto.dev) or chrome://tracing.

One file, one timeline:

- every operation is a complete (``"X"``) event on its OS thread (the thread id torch.profiler's
  kernel traces use), nested as a flame chart;
- host RSS and GPU allocator memory are counter (``"C"``) events at each operation's start and
  end, so Perfetto draws them as memory tracks under the spans;
- where CUDA events timed an operation, a ``GPU`` track holds where it ran on the device;
- the kernel traces a ``detailed`` profile captured (``profile.trace_files``) are merged in (less
  Kineto's markers of its own capture window, whose process and thread ids are not numbers).

Times are microseconds on the Unix time base of those kernel traces: the profiler reads its clock
beside the Unix clock once (``metadata["clock_sync"]``), and ``ts`` counts from
``baseTimeNanoseconds`` (the kernel traces' own, else the whole second before the first span),
as torch.profiler writes it. Profiles saved before the clock was synced start at 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from diffprof.profiler.exporters.base import Exporter, register
from diffprof.profiler.record import OperationRecord, Profile

#: The pseudo thread of the GPU track (kernel traces put device work under their own pid).
GPU_TID = 0


def _load_kernel_trace(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # a kernel trace removed or damaged since: the spans still export
    return data if isinstance(data, dict) and isinstance(data.get("traceEvents"), list) else None


class _TimeBase:
    """Profiler clock (ns) -> trace microseconds on the Unix base of the kernel traces."""

    def __init__(self, profile: Profile, kernels: list[dict[str, Any]]) -> None:
        sync = profile.metadata.get("clock_sync") or {}
        self.offset = int(sync["unix_ns"]) - int(sync["clock_ns"]) if {"unix_ns", "clock_ns"} <= set(sync) else None
        bases = [int(k["baseTimeNanoseconds"]) for k in kernels if isinstance(k.get("baseTimeNanoseconds"), int)]
        first = min((r.start_ns for r in profile.records), default=0)
        if self.offset is None:
            self.base = first  # an old profile: from its first span, as before
        elif bases:
            self.base = min(bases) - self.offset
        else:
            self.base = (first + self.offset) // 1_000_000_000 * 1_000_000_000 - self.offset
        self.unix_base = None if self.offset is None else self.base + self.offset

    def us(self, clock_ns: float) -> float:
        return (clock_ns - self.base) / 1e3


def _counters(records: list[OperationRecord], pid: int, time: _TimeBase) -> list[dict[str, Any]]:
    """Host RSS and GPU memory as counter events at each operation's boundaries, in time order."""
    points: dict[tuple[str, float], dict[str, int]] = {}
    for r in records:
        for ts, rss, allocated, reserved in ((r.start_ns, r.rss_start, r.allocated_start, r.reserved_start),
                                             (r.end_ns, r.rss_end, r.allocated_end, r.reserved_end)):
            if rss is not None:
                points[("host RSS", time.us(ts))] = {"rss_bytes": int(rss)}
            if allocated is not None:
                args = {"allocated_bytes": int(allocated)}
                if reserved is not None:
                    args["reserved_bytes"] = int(reserved)
                points[("GPU memory", time.us(ts))] = args
    return [{"name": name, "ph": "C", "ts": ts, "pid": pid, "args": args} for (name, ts), args in sorted(points.items(), key=lambda kv: kv[0][1])]


@register
class ChromeTraceExporter(Exporter):
    name = "chrome"
    file_extension = "trace.json"

    def __init__(self, merge_kernels: bool = True) -> None:
        self.merge_kernels = merge_kernels

    def trace(self, profile: Profile) -> dict[str, Any]:
        """The whole trace object: ``traceEvents``, ``displayTimeUnit`` and the time base."""
        kernels = [k for path in profile.trace_files if (k := _load_kernel_trace(path))] if self.merge_kernels else []
        time = _TimeBase(profile, kernels)
        pid = int(profile.metadata.get("pid") or os.getpid())
        events: list[dict[str, Any]] = []
        threads: dict[int, str] = {}
        # Parents before children at equal timestamps keeps viewers' nesting unambiguous.
        for r in sorted(profile.records, key=lambda r: (r.thread_id, r.start_ns, r.depth)):
            threads.setdefault(r.thread_id, r.thread_name)
            args: dict[str, Any] = dict(r.labels)
            for key in ("gpu_ns", "allocated_peak", "reserved_peak", "rss_start", "rss_end", "error"):
                value = getattr(r, key)
                if value is not None:
                    args[key] = value
            events.append({"name": r.name, "cat": r.category, "ph": "X", "ts": time.us(r.start_ns), "dur": r.wall_ns / 1e3,
                           "pid": pid, "tid": r.thread_id, "args": args})
        reference = profile.metadata.get("gpu_reference_host_ns")
        if reference is not None:  # one extra track: where each operation ran on the GPU (CUDA events)
            for r in profile.records:
                if r.gpu_ns is None or r.gpu_start_ns is None:
                    continue
                events.append({"name": r.name, "cat": f"{r.category} (gpu)", "ph": "X", "ts": time.us(reference + r.gpu_start_ns),
                               "dur": r.gpu_ns / 1e3, "pid": pid, "tid": GPU_TID, "args": {"host_thread": r.thread_name, **r.labels}})
            threads[GPU_TID] = f"GPU ({profile.device}, CUDA events)"
        events += _counters(profile.records, pid, time)
        for kernel in kernels:
            base = kernel.get("baseTimeNanoseconds")
            shift = (int(base) - time.unix_base) / 1e3 if time.unix_base is not None and isinstance(base, int) else 0.0
            for e in kernel["traceEvents"]:
                if not isinstance(e, dict) or (e.get("ph") == "M" and e.get("pid") == pid and e.get("name") == "process_name"):
                    continue  # our process name stays ours
                if not all(isinstance(e.get(k, 0), int) for k in ("pid", "tid")):
                    continue  # Kineto's own markers ("Spans", "Record Window End") name no process or thread
                if shift and isinstance(e.get("ts"), (int, float)):
                    e = {**e, "ts": e["ts"] + shift}
                events.append(e)
        meta = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"diffprof ({profile.device})"}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}} for tid, name in threads.items()]
        out: dict[str, Any] = {"traceEvents": meta + events, "displayTimeUnit": "ms"}
        if time.unix_base is not None:
            out["baseTimeNanoseconds"] = time.unix_base
        return out

    def events(self, profile: Profile) -> list[dict[str, Any]]:
        return list(self.trace(profile)["traceEvents"])

    def render(self, profile: Profile) -> str:
        return json.dumps(self.trace(profile), default=str)
