"""Markdown (GitHub flavour): a summary line, warnings, one pipe table of cells, the differences."""

from __future__ import annotations

from diffprof.analysis.compare import Comparison
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register
from diffprof.report.comparison.rows import HEADERS, caption_lines, comparison_rows, environment_rows, heading, machine_rows
from diffprof.report.markdown import escape, pipe_table

NUMERIC = {"A", "B", "change", "interval", "p (adj.)", "n"}


def render_comparison_markdown(comparison: Comparison, options: CompareOptions | None = None) -> str:
    options = options or CompareOptions()
    lines = [f"# {escape(options.title_for(comparison))}", "", escape(heading(comparison)), ""]
    caption = caption_lines(comparison)
    lines += [f"**{escape(caption[0])}**", ""]
    lines += [f"- {escape(line)}" for line in caption[1:]]
    if len(caption) > 1:
        lines.append("")
    rows = ([escape(t) for t in row.texts] for row in comparison_rows(comparison))
    lines += pipe_table(list(HEADERS), rows, [h in NUMERIC for h in HEADERS])
    lines.append("")
    for title, pairs in (("Machine state", machine_rows(comparison)), ("Environment differences", environment_rows(comparison))):
        if pairs:
            lines += [f"## {title}", ""]
            lines += pipe_table(["", "A", "B"], ([escape(k), escape(a), escape(b)] for k, a, b in pairs), [False, False, False])
            lines.append("")
    return "\n".join(lines)


@register
class MarkdownComparisonRenderer(ComparisonRenderer):
    name = "markdown"
    file_extension = "md"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        return render_comparison_markdown(comparison, options)
