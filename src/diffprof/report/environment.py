"""The block every report opens with: which run, when, how it was asked for, on what machine, and
in what state that machine was (a busy host is a warning line every report carries).

The environment dict is whatever the runner captured; it is flattened generically (nested dicts
become ``gpu.name``, lists of dicts ``gpus[0].name``) with the keys a reader looks for first
(versions, GPU, driver, CPU) put first, so a new captured field shows up with no change here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from diffprof.report.tables import format_value
from diffprof.results import RunInfo
from diffprof.units import fmt_bytes, fmt_seconds

#: Environment keys shown first, in this order (matched on the flattened key's first part).
PREFERRED_KEYS: tuple[str, ...] = (
    "diffprof",
    "python",
    "torch",
    "cuda",
    "cudnn",
    "diffusers",
    "transformers",
    "accelerate",
    "xformers",
    "gpu",
    "gpus",
    "gpu_name",
    "gpu_memory_bytes",
    "driver",
    "cpu",
    "cpu_count",
    "memory_bytes",
    "platform",
    "os",
    "hostname",
)


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out.append((prefix, value))


def _format(key: str, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith("_bytes"):
        return fmt_bytes(value)
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(format_value(v) for v in value)
    return format_value(value)


def _duration(start: str | None, end: str | None) -> str | None:
    try:
        seconds = (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except (TypeError, ValueError):
        return None
    return fmt_seconds(seconds) if seconds >= 0 else None


def run_items(run: RunInfo) -> list[tuple[str, str]]:
    """The run itself: id, status, start, end, duration, command, cell counts."""
    items = [("run", f"#{run.id}"), ("status", run.status), ("started", run.created_at or "-")]
    items.append(("finished", run.finished_at or "-"))
    duration = _duration(run.created_at, run.finished_at)
    if duration:
        items.append(("duration", duration))
    if run.command:
        items.append(("command", run.command))
    failed = len(run.failed_cells)
    cells, suites = len(run.cells), len(run.suites())
    text = f"{cells} cell{'s' * (cells != 1)} in {suites} suite{'s' * (suites != 1)}"
    items.append(("cells", text + (f", {failed} failed" if failed else "")))
    return items


def environment_items(run: RunInfo) -> list[tuple[str, str]]:
    """The captured environment flattened to (key, text) pairs, :data:`PREFERRED_KEYS` first."""
    flat: list[tuple[str, Any]] = []
    _flatten("", run.environment, flat)
    rank = {k: i for i, k in enumerate(PREFERRED_KEYS)}

    def order(item: tuple[tuple[str, Any], int]) -> tuple[int, int]:
        (key, _), position = item
        head = key.split(".", 1)[0].split("[", 1)[0]
        return (rank.get(head, len(rank)), position)

    ranked = sorted(((kv, i) for i, kv in enumerate(flat) if kv[0]), key=order)
    return [(key, _format(key, value)) for (key, value), _ in ranked]


def machine_items(run: RunInfo) -> list[tuple[str, str]]:
    """The host's state while the run measured, and a ``warning`` line for a busy host or GPU
    clocks held down (:mod:`diffprof.analysis.machine`); nothing for runs that did not record it."""
    from diffprof.analysis.machine import machine_summary, machine_warnings

    summary = machine_summary(run.machine)
    items = [("machine", summary)] if summary else []
    return items + [("warning", w) for w in machine_warnings(run.machine)]


def header_items(run: RunInfo) -> list[tuple[str, str]]:
    """Run facts, the machine's state, then environment: the opening block of every human-readable report."""
    return run_items(run) + machine_items(run) + environment_items(run)
