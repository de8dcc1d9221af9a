"""Markdown (GitHub flavour): environment list, failed cells, one pipe table per suite.

:func:`render_markdown_section` is the compact form that goes inside a hand-written page (see
:mod:`diffprof.report.sections`): one provenance line, then the tables.

Cell text is escaped for tables (``|``, newlines) and for HTML (``<``, ``&``), since GitHub
renders raw HTML inside markdown and prompts or errors may contain it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.report.environment import header_items
from diffprof.report.format import first_line, format_settings
from diffprof.report.sections import provenance
from diffprof.report.summary import summarize
from diffprof.report.tables import SuiteTable, cells_by_suite, quality_note, suite_table
from diffprof.results import RunInfo


def escape(text: str) -> str:
    """Text safe inside a markdown table cell or list item."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def pipe_table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    """A GitHub pipe table's lines from cell texts as given (escape them first where needed);
    ``numeric`` columns are right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(table: SuiteTable) -> list[str]:
    return pipe_table([escape(h) for h in table.headers], ([escape(v) for v in row] for row in table.text_rows()), [c.numeric for c in table.columns])


def summary_lines(run: RunInfo) -> list[str]:
    """The summary as a list: answers per suite, then failures and warnings (marked)."""
    marks = {"answer": "", "failure": "**failed:** ", "warning": "**warning:** "}
    return [f"- {marks[f.kind]}{'**' + escape(f.suite) + '**: ' if f.suite else ''}{escape(f.text)}" for f in summarize(run)]


def _body(run: RunInfo, heading: str) -> list[str]:
    """Failed cells, then per suite its shared settings (whole: nothing cut), quality note,
    legend, notes, warnings and table: what the html report says, as text."""
    lines: list[str] = []
    failed = run.failed_cells
    if failed:
        lines += [f"{heading} Failed cells ({len(failed)})", ""]
        lines += [f"- **{escape(c.suite)}** {escape(c.label)}: {escape(first_line(c.error) or 'failed')}" for c in failed]
        lines.append("")
    for suite, cells in cells_by_suite(run).items():
        table = suite_table(suite, cells)
        note = quality_note(cells)
        common = {k: v for k, v in table.common.items() if not (note and k == "quality")}
        lines += [f"{heading} {escape(table.suite)}", ""]
        if common:
            lines += [f"Shared settings: {escape(format_settings(common, max_len=100_000))}", ""]
        paragraphs = [note, table.legend, *(f"Note: {n}" for n in table.notes), *(f"Warning: {w}" for w in table.warnings)]
        lines += [line for p in paragraphs if p for line in (escape(p), "")]
        lines += markdown_table(table)
        lines.append("")
    return lines


def render_markdown(run: RunInfo, options: ReportOptions | None = None) -> str:
    options = options or ReportOptions()
    lines = [f"# {escape(options.title_for(run))}", ""]
    summary = summary_lines(run)
    if summary:
        lines += ["## Summary", "", *summary, ""]
    lines += ["<details><summary>Run and environment</summary>", ""]
    lines += [f"- **{escape(k)}**: {escape(v)}" for k, v in header_items(run)]
    lines += ["", "</details>", ""]
    lines += _body(run, "##")
    return "\n".join(lines)


def render_markdown_section(run: RunInfo, heading: str = "####") -> str:
    """The run's tables under one provenance line (command, date, machine), for a marked section
    of a larger page; headings start at ``heading`` so they nest under the page's own."""
    when = None
    try:
        when = datetime.fromisoformat(run.created_at) if run.created_at else None
    except ValueError:
        pass
    command = run.command or f"diffprof run #{run.id}"
    lines = [provenance(command, run.environment, when), ""]
    return "\n".join(lines + _body(run, heading)).rstrip() + "\n"


@register
class MarkdownRenderer(Renderer):
    name = "markdown"
    file_extension = "md"

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str:
        return render_markdown(run, options)
