"""Markdown (GitHub flavour): environment list, failed cells, one pipe table per suite.

:func:`render_markdown_section` is the compact form that goes inside a hand-written page (see
:mod:`diffprof.report.sections`): one provenance line, then the tables.

Cell text is escaped for tables (``|``, newlines) and for HTML (``<``, ``&``), since GitHub
renders raw HTML inside markdown and prompts or errors may contain it.
"""

from __future__ import annotations

from datetime import datetime

from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.report.environment import header_items
from diffprof.report.sections import provenance
from diffprof.report.tables import SuiteTable, first_line, format_settings, suite_tables
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


def markdown_table(table: SuiteTable) -> list[str]:
    lines = ["| " + " | ".join(escape(h) for h in table.headers) + " |"]
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|")
    for row in table.text_rows():
        lines.append("| " + " | ".join(escape(v) for v in row) + " |")
    return lines


def _body(run: RunInfo, heading: str) -> list[str]:
    """Failed cells, then per suite its shared settings, notes and table."""
    lines: list[str] = []
    failed = run.failed_cells
    if failed:
        lines += [f"{heading} Failed cells ({len(failed)})", ""]
        lines += [f"- **{escape(c.suite)}** {escape(c.label)}: {escape(first_line(c.error) or 'failed')}" for c in failed]
        lines.append("")
    for table in suite_tables(run):
        lines += [f"{heading} {escape(table.suite)}", ""]
        if table.common:
            lines += [f"Shared settings: {escape(format_settings(table.common))}", ""]
        lines += [line for note in table.notes for line in (f"Note: {escape(note)}", "")]
        lines += markdown_table(table)
        lines.append("")
    return lines


def render_markdown(run: RunInfo, options: ReportOptions | None = None) -> str:
    options = options or ReportOptions()
    lines = [f"# {escape(options.title_for(run))}", ""]
    lines += [f"- **{escape(k)}**: {escape(v)}" for k, v in header_items(run)]
    lines.append("")
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
