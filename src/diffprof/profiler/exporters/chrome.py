"""Chrome trace JSON (the Trace Event Format): complete ("X") events in microseconds, one track per
thread, so nesting shows as a flame chart in Perfetto (ui.perfetto.dev) or chrome://tracing."""

from __future__ import annotations

import json
import os
from typing import Any

from diffprof.profiler.exporters.base import Exporter, register
from diffprof.profiler.record import Profile


@register
class ChromeTraceExporter(Exporter):
    name = "chrome"
    file_extension = "trace.json"

    def events(self, profile: Profile) -> list[dict[str, Any]]:
        pid = os.getpid()
        origin = min((r.start_ns for r in profile.records), default=0)
        events: list[dict[str, Any]] = []
        threads: dict[int, str] = {}
        # Parents before children at equal timestamps keeps viewers' nesting unambiguous.
        for r in sorted(profile.records, key=lambda r: (r.thread_id, r.start_ns, r.depth)):
            threads.setdefault(r.thread_id, r.thread_name)
            args: dict[str, Any] = {k: v for k, v in r.labels.items()}
            for key in ("gpu_ns", "allocated_peak", "reserved_peak", "rss_start", "rss_end", "error"):
                value = getattr(r, key)
                if value is not None:
                    args[key] = value
            events.append(
                {
                    "name": r.name,
                    "cat": r.category,
                    "ph": "X",
                    "ts": (r.start_ns - origin) / 1e3,
                    "dur": r.wall_ns / 1e3,
                    "pid": pid,
                    "tid": r.thread_id,
                    "args": args,
                }
            )
        reference = profile.metadata.get("gpu_reference_host_ns")
        gpu_tid = 0  # one extra track: where each operation ran on the GPU (CUDA events)
        if reference is not None:
            for r in profile.records:
                if r.gpu_ns is None or r.gpu_start_ns is None:
                    continue
                events.append(
                    {
                        "name": r.name,
                        "cat": f"{r.category} (gpu)",
                        "ph": "X",
                        "ts": (reference + r.gpu_start_ns - origin) / 1e3,
                        "dur": r.gpu_ns / 1e3,
                        "pid": pid,
                        "tid": gpu_tid,
                        "args": {"host_thread": r.thread_name, **{k: v for k, v in r.labels.items()}},
                    }
                )
            threads[gpu_tid] = f"GPU ({profile.device})"
        meta = [{"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"diffprof ({profile.device})"}}]
        meta += [
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}} for tid, name in threads.items()
        ]
        return meta + events

    def render(self, profile: Profile) -> str:
        return json.dumps({"traceEvents": self.events(profile), "displayTimeUnit": "ms"}, default=str)
