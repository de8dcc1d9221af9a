"""Rich tables for the terminal: ``runs``, ``show``, ``compare`` and ``generate``'s timing.

Each function takes plain data (``RunInfo``, ``Comparison``, rows of a summary) and returns a
``rich.table.Table``; the CLI prints it. Labels become columns, so every suite renders with the
same code, and metric values go through the one formatter (:mod:`diffprof.report.format`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from diffprof.analysis.cells import is_noisy
from diffprof.analysis.compare import Comparison
from diffprof.environment import describe_environment
from diffprof.metrics import key_metrics
from diffprof.report.format import metric_header
from diffprof.report.tables import metric_texts, shown_metrics
from diffprof.results import NOTE_KEYS, RunInfo
from diffprof.units import fmt_pct, fmt_seconds

_STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red", "interrupted": "yellow", "ok": "green"}
_VERDICT_STYLE = {
    "regression": "bold red",
    "improvement": "bold green",
    "same": "dim",
    "not significant": "yellow",
    "too noisy": "yellow",
    "host busy": "magenta",
    "failed": "red",
    "missing": "yellow",
}


def _when(stamp: str | None) -> str:
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def _duration(start: str | None, end: str | None) -> str:
    try:
        seconds = (datetime.fromisoformat(end or "") - datetime.fromisoformat(start or "")).total_seconds()
    except ValueError:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _styled(text: str, styles: dict[str, str]) -> str:
    style = styles.get(text)
    return f"[{style}]{text}[/]" if style else text


def runs_table(runs: list[RunInfo], title: str = "diffprof runs") -> Table:
    """One row per run (as :meth:`Store.list_runs` returns them): id, name, when, status, cells."""
    table = Table(title=title, title_justify="left")
    for name, kw in (
        ("id", {"justify": "right"}),
        ("name", {}),
        ("started", {"no_wrap": True}),
        ("took", {"justify": "right", "no_wrap": True}),
        ("status", {}),
        ("cells", {"justify": "right"}),
        ("environment", {"overflow": "ellipsis", "max_width": 48}),
        ("command", {"overflow": "ellipsis", "max_width": 48}),
    ):
        table.add_column(name, **kw)
    for run in runs:
        ok, failed = run.counts.get("ok", 0), run.counts.get("failed", 0)
        cells = f"{ok}" + (f" [red]+{failed} failed[/]" if failed else "")
        table.add_row(
            str(run.id),
            escape(run.name or ""),
            _when(run.created_at),
            _duration(run.created_at, run.finished_at) if run.finished_at else "-",
            _styled(run.status, _STATUS_STYLE),
            cells,
            escape(describe_environment(run.environment)),
            escape(run.command),
        )
    if not runs:
        table.caption = "no runs yet: `diffprof bench` records one"
    return table


def cells_table(run: RunInfo, metrics: list[str] | None = None, compact: bool = False) -> Table:
    """One row per cell of a run (``diffprof show``): suite, one column per label, status, metrics.

    Args:
        run: a run with its cells (:meth:`Store.get_run`).
        metrics: metric columns to show; defaults to every metric any cell has (registry order).
        compact: only the key metrics (host RSS standing in for GPU memory on a CPU run), and
            s/image without its ± (the note column flags noisy cells), as ``report --format
            console`` prints them in a terminal.
    """
    if metrics is not None:
        names = list(metrics)
    else:
        names = (shown_metrics(run.cells, key_metrics()) if compact else []) or shown_metrics(run.cells)
    label_names = list(dict.fromkeys(k for c in run.cells for k in c.labels))
    title = escape(f"run {run.id}" + (f" ({run.name})" if run.name else "") + f" · {run.status} · {describe_environment(run.environment)}")
    table = Table(title=title, title_justify="left")
    # what says which cell a row is never shrinks away: metric columns give way first
    table.add_column("suite", no_wrap=True, min_width=max((len(c.suite) for c in run.cells), default=5))
    for label in label_names:
        widest = max((len(str(c.labels.get(label, ""))) for c in run.cells), default=0)
        table.add_column(escape(label), overflow="fold", min_width=min(max(widest, len(label)), 40))
    table.add_column("status", no_wrap=True, min_width=6)
    for name in names:
        table.add_column(escape(metric_header(name)), justify="right", no_wrap=True)
    table.add_column("note", overflow="fold", max_width=60)
    for cell in run.cells:
        note = ""
        if not cell.ok:
            lines = (cell.error or "").strip().splitlines()
            note = f"[red]{escape(lines[0]) if lines else 'failed'}[/]"
        elif is_noisy(cell):
            note = "[yellow]noisy: IQR > 10% of median[/]"
        if cell.ok:  # what the cell's numbers need said (a detailed-level timing, a shared-process RSS, ...)
            said = [escape(str(cell.settings[k])) for k in NOTE_KEYS if cell.settings.get(k)]
            note = "; ".join(filter(None, [note, *said]))
        texts = metric_texts(cell, names, spread=not compact)
        table.add_row(
            escape(cell.suite),
            *[escape(str(cell.labels.get(k, ""))) for k in label_names],
            _styled(cell.status, {"ok": "green", "failed": "red"}),
            *[escape(texts[n]) for n in names],
            note,
        )
    if run.command:
        table.caption = escape(run.command)
    return table


def comparison_table(comparison: Comparison) -> Table:
    """One row per matched cell: A, B, change, interval, p, n, verdict; the caption sums it up and
    carries every warning (busy hosts, machine states and environments that differ)."""
    from diffprof.report.comparison.rows import HEADERS, caption_lines, comparison_rows, heading

    c = comparison
    table = Table(title=escape(f"run {c.run_b} vs run {c.run_a} (baseline) · {heading(c)}"), title_justify="left")
    right = {"A", "B", "change", "interval", "p (adj.)", "n"}
    for name in HEADERS:
        if name == "note":
            table.add_column(name, overflow="fold", max_width=60)
        else:
            table.add_column(name, justify="right" if name in right else "left", no_wrap=name != "cell")
    for row in comparison_rows(c):
        texts = [escape(t) for t in row.texts]
        texts[8] = f"[{_VERDICT_STYLE.get(row.verdict, '')}]{texts[8]}[/]" if row.verdict in _VERDICT_STYLE else texts[8]
        table.add_row(*texts)
    lines = [escape(line) for line in caption_lines(c)]
    table.caption = "\n".join(f"[yellow]{line}[/]" if line.startswith("warning:") else line for line in lines)
    table.caption_justify = "left"
    return table


def timing_table(rows: list[tuple[str, Any]], load: Any) -> Table:
    """``generate``'s summary: pipeline load, first call, then ``rows`` of (component, time text).

    ``load`` is the engine's ``LoadInfo`` (seconds, gb_per_s, first_call_s, compile_cache).
    """
    table = Table(title="per-component timing (median over calls)", title_justify="left")
    for col in ("component", "time"):
        table.add_column(col, justify="left" if col == "component" else "right")
    table.add_row("pipeline load", fmt_seconds(load.seconds) + (f"  ({load.gb_per_s:.2f} GB/s)" if load.gb_per_s else ""))
    if load.first_call_s is not None:
        cache = f", compile cache {load.compile_cache}" if load.compile_cache else ""
        table.add_row("first call (compile, capture, lazy init)", fmt_seconds(load.first_call_s) + cache)
    for name, value in rows:
        table.add_row(name, value)
    return table
