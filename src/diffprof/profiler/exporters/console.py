"""Console summary: one rich table row per (category, name), statistics from the raw samples."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from diffprof.profiler.exporters.base import Exporter, register
from diffprof.profiler.record import Profile
from diffprof.units import fmt_bytes, fmt_ns, fmt_pct


def summary_table(profile: Profile, title: str | None = None) -> Table:
    table = Table(title=title or f"diffprof profile · level {profile.level} · {profile.device}", title_justify="left")
    table.add_column("operation", no_wrap=True, min_width=12)
    table.add_column("category", no_wrap=True, overflow="ellipsis", max_width=18)
    for col in ("count", "total", "mean", "median", "p90", "p99", "min", "max", "IQR"):
        table.add_column(col, justify="right", no_wrap=True)
    gpu = any(s.gpu for s in profile.stats())
    if gpu:
        table.add_column("GPU median", justify="right")
    mem = any(s.peak_allocated is not None for s in profile.stats())
    if mem:
        table.add_column("peak alloc", justify="right")
    table.add_column("", justify="left")
    for s in profile.stats():
        w = s.wall
        row = [s.name, s.category, str(w.count)] + [fmt_ns(v) for v in (w.total, w.mean, w.median, w.p90, w.p99, w.min, w.max, w.iqr)]
        if gpu:
            row.append(fmt_ns(s.gpu.median) if s.gpu else "-")
        if mem:
            row.append(fmt_bytes(s.peak_allocated))
        flags = []
        if w.noisy:
            flags.append("[yellow]noisy[/]")
        if s.errors:
            flags.append(f"[red]{s.errors} failed[/]")
        row.append(" ".join(flags))
        table.add_row(*row)
    if profile.overhead_ns_per_op is not None:
        frac = profile.overhead_fraction
        table.caption = (
            f"profiler overhead: {fmt_ns(profile.overhead_ns_per_op)} per operation × {len(profile)} operations"
            + (f" ≈ {fmt_pct(frac)} of profiled time" if frac is not None else "")
        )
    return table


@register
class ConsoleExporter(Exporter):
    name = "console"
    file_extension = "txt"

    def __init__(self, width: int = 160) -> None:
        self.width = width

    def render(self, profile: Profile) -> str:
        buf = io.StringIO()
        Console(file=buf, width=self.width, color_system=None).print(summary_table(profile))
        return buf.getvalue()
