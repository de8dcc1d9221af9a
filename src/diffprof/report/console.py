"""Console: the environment block, then one rich table per suite; failed cells in red.

Every value goes in as :class:`rich.text.Text`, never as markup, so a label or error holding
``[brackets]`` prints as written.
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from diffprof.metrics import key_metrics
from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.report.environment import header_items, machine_items
from diffprof.report.format import format_settings
from diffprof.report.tables import SuiteTable, suite_tables
from diffprof.results import RunInfo


def environment_table(run: RunInfo) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in header_items(run):
        grid.add_row(Text(key), Text(value))
    return grid


def suite_rich_table(table: SuiteTable, compact: bool = False) -> Table:
    failed = f", {table.failed} failed" if table.failed else ""
    out = Table(title=Text(f"{table.suite} ({len(table.rows)} cells{failed})", style="bold"), title_justify="left")
    if compact and not table.failed:  # every row says "ok": give the room to the numbers
        table = SuiteTable(table.suite, [c for c in table.columns if c.kind != "status"], table.rows, table.common, table.warnings)
    for i, col in enumerate(table.columns):
        if col.kind == "error":
            out.add_column(col.header, overflow="fold", min_width=20)
        elif col.kind in ("label", "status"):
            # the axes identify a row: keep them whole and let the metric columns give way
            widest = max([len(col.header)] + [len(r.texts(table.columns)[i]) for r in table.rows])
            out.add_column(col.header, no_wrap=True, min_width=min(widest, 32), overflow="ellipsis")
        else:
            out.add_column(col.header, justify="right", no_wrap=True)
    for row in table.rows:
        cells = []
        for col, text in zip(table.columns, row.texts(table.columns)):
            style = "yellow" if col.kind == "noise" else ("red" if row.failed and col.kind in ("status", "error") else "")
            cells.append(Text(text, style=style))
        out.add_row(*cells, style="red" if row.failed else None)
    caption = [f"shared settings: {format_settings(table.common)}"] if table.common and not compact else []
    caption += [f"{table.legend}"] if table.legend and not compact else []
    caption += [f"note: {note}" for note in table.notes]
    caption += [f"warning: {w}" for w in table.warnings]
    if caption:
        out.caption = Text("\n".join(caption), style="dim")
        out.caption_justify = "left"
    return out


def summary_text(run: RunInfo) -> Text:
    """The summary (:func:`diffprof.report.summary.summarize`) as lines: answers, failures, warnings."""
    from diffprof.report.summary import summarize

    styles = {"answer": "", "failure": "red", "warning": "yellow"}
    out = Text("Summary\n", style="bold")
    for f in summarize(run):
        out.append(f"- {f.suite + ': ' if f.suite else ''}{f.text}\n", style=styles[f.kind])
    return out


def console_renderables(run: RunInfo, options: ReportOptions | None = None) -> RenderableType:
    """What the console report prints, for a caller that has its own (colour) console."""
    options = options or ReportOptions()
    if options.compact:
        from diffprof.environment import describe_environment

        about = Text(f"{run.status} · {run.created_at} · {describe_environment(run.environment)}", style="dim")
        warnings = [Text(f"warning: {v}", style="yellow") for k, v in machine_items(run) if k == "warning"]
        parts: list[RenderableType] = [Text(options.title_for(run), style="bold underline"), about, *warnings, Text("")]
    else:
        parts = [Text(options.title_for(run), style="bold underline"), summary_text(run), Text(""), environment_table(run), Text("")]
    for table in suite_tables(run, key_metrics() if options.compact else None):
        parts += [suite_rich_table(table, options.compact), Text("")]
    if not run.cells:
        parts.append(Text("no cells in this run", style="yellow"))
    return Group(*parts)


@register
class ConsoleRenderer(Renderer):
    name = "console"
    file_extension = "txt"

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str:
        options = options or ReportOptions()
        buf = io.StringIO()
        console = Console(
            file=buf,
            width=options.width,
            color_system="truecolor" if options.color else None,
            force_terminal=options.color,
            legacy_windows=False,
        )
        console.print(console_renderables(run, options))
        return buf.getvalue()
