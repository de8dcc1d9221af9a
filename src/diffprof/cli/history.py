"""`diffprof history`: a metric of a cell, or of a suite's cells, across stored runs, with change points."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from diffprof.cli.app import app, console
from diffprof.cli.stores import db_option, open_store
from diffprof.errors import ConfigError

#: Runs ``history`` reads when none are named (the newest ones, shown oldest first).
LAST = 30


def parse_cells(cells: list[str]) -> dict[str, str]:
    """``["scheduler=euler", "steps=8"]`` -> ``{"scheduler": "euler", "steps": "8"}``."""
    out: dict[str, str] = {}
    for entry in cells:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--cell {entry!r} is not KEY=VALUE", "name a label and its value, e.g. --cell scheduler=euler")
        out[key.strip()] = value.strip()
    return out


def parse_threshold(text: str) -> float:
    try:
        return float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError as exc:
        raise ConfigError(f"threshold {text!r} is not a number", "e.g. 5% or 0.05") from exc


@app.command("history")
def history_cmd(
    runs: list[str] = typer.Argument(None, help="Runs to show, in this order (ids, names, latest~N); default: the newest --last runs, oldest first."),
    suite: str = typer.Option(None, "--suite", "-s", help="Only cells of this suite."),
    cell: list[str] = typer.Option(None, "--cell", help="Only cells whose label KEY has VALUE (repeatable), e.g. --cell scheduler=euler."),
    metric: str = typer.Option("s_per_image", help="Metric to follow."),
    threshold: str = typer.Option("5%", help="Smallest step that counts as a change point."),
    last: int = typer.Option(LAST, min=2, help="Runs read when none are named."),
    format: str = typer.Option("console", "--format", "-f", help="console, markdown or html (table and plot)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write to this file (html default: diffprof-history.html)."),
    db: str = db_option(),
) -> None:
    """Follow a metric of cells across runs, with change points (asv-style step detection) marked.

    Examples: `diffprof history -s schedulers --cell scheduler=euler`; `diffprof history base v2 v3
    -s resolutions -f html`.
    """
    from diffprof.analysis.history import history
    from diffprof.report.history import FORMATS, render_history

    if format not in FORMATS:
        from diffprof.errors import unknown_choice

        raise unknown_choice("history format", format, FORMATS)
    labels = parse_cells(cell or [])
    with open_store(db) as store:
        if runs:
            loaded = [store.get_run(ref) for ref in runs]
        else:
            loaded = [store.get_run(r.id) for r in reversed(store.list_runs(last))]
    result = history(loaded, metric, suite=suite, labels=labels, threshold=parse_threshold(threshold))
    text = render_history(result, format, width=console.width)
    if out is None and format == "html":
        out = Path("diffprof-history.html")
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console.print(f"history: [bold]{out.resolve()}[/]", highlight=False)
