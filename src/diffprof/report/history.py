"""``diffprof history``: a metric of cells across runs as a table (console, markdown) and a plot (html).

One row per run (oldest first), one column per cell; a value where a change point starts carries
``▲ +12.0%`` (worse) or ``▼ -8.0%`` (better) beside it. The html page is self-contained like every
report (:data:`~diffprof.report.html.CSP`): the table, then an inline SVG of every cell's series on a log
axis with the change points as dashed lines (:mod:`diffprof.report.figure`).
"""

from __future__ import annotations

import io
from html import escape

from rich.console import Console
from rich.table import Table
from rich.text import Text

from diffprof.analysis.history import CellHistory, History
from diffprof.analysis.steps import Step
from diffprof.errors import unknown_choice
from diffprof.report.figure import COLORS, Drawn, new_figure, plain, to_svg
from diffprof.report.format import format_metric, metric_header
from diffprof.report.html_parts import figure, page, scroll
from diffprof.report.markdown import escape as md_escape
from diffprof.report.markdown import pipe_table

FORMATS = ("console", "markdown", "html")


def step_text(history: History, step: Step) -> str:
    worse = step.ratio > 1 if history.direction == "lower" else step.ratio < 1
    return f"{'▲' if worse else '▼'} {100 * step.change:+.1f}%"


def _column(cell: CellHistory) -> str:
    return f"{cell.suite}: {cell.label}"


def history_rows(history: History) -> tuple[list[str], list[list[str]]]:
    """The table's headers and rows (runs that hold none of the cells are left out)."""
    headers = ["run", "name", "started", *(_column(c) for c in history.cells)]
    rows = []
    for run in history.runs:
        texts = []
        for cell in history.cells:
            point = next((p for p in cell.points if p.run_id == run.id), None)
            if point is None:
                texts.append("-")
                continue
            text = format_metric(history.metric, point.value)
            if point.spread is not None:
                text += f" ±{100 * point.spread:.1f}%"
            step = cell.step_at(run.id)
            texts.append(text + (f" {step_text(history, step)}" if step else ""))
        if any(t != "-" for t in texts):
            rows.append([str(run.id), run.name or "", (run.created_at or "")[:16].replace("T", " "), *texts])
    return headers, rows


def summary(history: History) -> str:
    """``3 cells over 12 runs; change points: schedulers ddim at run 9 (▲ +12.0%)``."""
    steps = [f"{_column(c)} at run {c.points[s.at].run_id} ({step_text(history, s)})" for c in history.cells for s in c.steps]
    runs = len({p.run_id for c in history.cells for p in c.points})
    head = f"{metric_header(history.metric)} of {len(history.cells)} cell{'s' * (len(history.cells) != 1)} over {runs} runs"
    return head + ("; change points: " + "; ".join(steps) if steps else f"; no change beyond {100 * history.threshold:.0f}%")


def console_text(history: History, width: int = 160) -> str:
    headers, rows = history_rows(history)
    table = Table(title=Text(summary(history)), title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="right" if i >= 3 or i == 0 else "left")
    for row in rows:
        table.add_row(*[Text(t, style="red" if "▲" in t else "green" if "▼" in t else "") for t in row])
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(table)
    return buf.getvalue()


def markdown_text(history: History) -> str:
    headers, rows = history_rows(history)
    lines = [f"# diffprof history: {md_escape(metric_header(history.metric))}", "", md_escape(summary(history)), ""]
    lines += pipe_table([md_escape(h) for h in headers], ([md_escape(t) for t in r] for r in rows), [i == 0 or i >= 3 for i in range(len(headers))])
    return "\n".join(lines) + "\n"


def history_figure(history: History) -> Drawn:
    """Every cell's series against its runs, log scale, change points dashed."""
    fig, (ax,) = new_figure(9, 4.2)
    runs = [r.id for r in history.runs]
    position = {rid: i for i, rid in enumerate(runs)}
    for k, cell in enumerate(history.cells):
        colour = COLORS[k % len(COLORS)]
        xs = [position[p.run_id] for p in cell.points]
        ys = [p.value for p in cell.points]
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=colour, label=plain(_column(cell)))
        for step in cell.steps:
            x = position[cell.points[step.at].run_id] - 0.5
            ax.axvline(x, color=colour, ls="--", lw=1)
            ax.annotate(plain(step_text(history, step)), (x, step.after), fontsize=8, color=colour, xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(runs)), [str(r) for r in runs], fontsize=7)
    ax.set_xlabel("run")
    ax.set_ylabel(plain(metric_header(history.metric)))
    if len(history.cells) <= 12:
        ax.legend(fontsize=7, loc="best")
    return to_svg(fig, summary(history))


def html_text(history: History) -> str:
    headers, rows = history_rows(history)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"up" if "▲" in t else "down" if "▼" in t else ""}">{escape(t)}</td>' for t in row) + "</tr>" for row in rows
    )
    title = f"diffprof history: {metric_header(history.metric)}"
    style = "td.up{color:#c62828;font-weight:600}td.down{color:#2e7d32;font-weight:600}"
    return page(title, [
        f"<h1>{escape(title)}</h1><p id=\"summary\">{escape(summary(history))}</p>",
        figure("history", history_figure(history)),
        scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"),
    ], style)


def render_history(history: History, fmt: str = "console", width: int = 160) -> str:
    """``history`` in ``fmt`` (:data:`FORMATS`)."""
    if fmt == "console":
        return console_text(history, width)
    if fmt == "markdown":
        return markdown_text(history)
    if fmt == "html":
        return html_text(history)
    raise unknown_choice("history format", fmt, FORMATS)
