"""Markdown for a GitHub Actions job summary (``>> $GITHUB_STEP_SUMMARY``): the gate's verdict in
the heading, the verdict table, the caption (warnings, rounds that would resolve noisy cells, cells
in one run only), and the machine-state and environment differences folded.

The rows are the ones every comparison format shows (:mod:`.rows`); this format differs from
``markdown`` in what a job page needs: the verdict first (❌ a believed regression or a newly
failing cell, what fails the job; ✅ none, with how many cells were inconclusive), a mark per
verdict that reads without colour, and the long parts in ``<details>``. Cell text is escaped
(:func:`diffprof.report.markdown.escape`) since labels, errors and versions may hold ``|`` or HTML.
"""

from __future__ import annotations

from diffprof.analysis.compare import Comparison
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register, side
from diffprof.report.comparison.rows import HEADERS, INCONCLUSIVE, caption_lines, comparison_rows, environment_rows, heading, machine_rows
from diffprof.report.markdown import escape, pipe_table

#: A mark per verdict, so the table reads at a glance (GitHub renders these in any theme).
MARKS = {
    "regression": "❌",
    "improvement": "🚀",
    "same": "✅",
    "not significant": "❔",
    "too noisy": "❔",
    "host busy": "⚠️",
    "failed": "💥",
    "missing": "➖",
}
NUMERIC = {"A", "B", "change", "interval", "p (adj.)", "n"}
VERDICT = HEADERS.index("verdict")


def headline(comparison: Comparison) -> str:
    """``❌ 2 regressions`` (believed slowdowns and newly failing cells), or ``✅ no regression``
    with the inconclusive cells counted: what the job's exit code says, in words."""
    c = comparison
    if c.has_regression:
        n = len(c.regressions) + len(c.newly_failed)
        return f"❌ {n} regression{'s' if n != 1 else ''}"
    unsure = sum(1 for cell in c.cells if cell.verdict in INCONCLUSIVE)
    return "✅ no regression" + (f" · ❔ {unsure} inconclusive" if unsure else "")


def render_github(comparison: Comparison, options: CompareOptions | None = None) -> str:
    c = comparison
    title = options.title if options and options.title else "diffprof compare"
    lines = [
        f"### {escape(title)}: {headline(c)}",
        "",
        f"**run {escape(side(c, 'B'))}** against the baseline **run {escape(side(c, 'A'))}** · {escape(heading(c))}",
        "",
    ]
    rows = []
    for row in comparison_rows(c):
        texts = [escape(t) for t in row.texts]
        texts[VERDICT] = f"{MARKS.get(row.verdict, '')} {escape(row.verdict)}"
        rows.append(texts)
    if rows:
        lines += pipe_table(list(HEADERS), rows, [h in NUMERIC for h in HEADERS])
        lines.append("")
    caption = caption_lines(c)
    lines += [f"**{escape(caption[0])}**", ""]
    if len(caption) > 1:
        lines += [f"- {escape(line)}" for line in caption[1:]] + [""]
    lines += _folded("Machine state", machine_rows(c), c)
    env = environment_rows(c)
    if env:
        lines += _folded(f"Environment: {len(env)} difference{'s' if len(env) != 1 else ''}", [(f"`{escape(k)}`", a, b) for k, a, b in env], c)
    else:
        lines += ["Environment: the same software and hardware in both runs.", ""]
    return "\n".join(lines)


def _folded(summary: str, pairs: list[tuple[str, str, str]], c: Comparison) -> list[str]:
    """A ``<details>`` block holding an (item, A, B) table."""
    head = ["", f"A: run {escape(side(c, 'A'))}", f"B: run {escape(side(c, 'B'))}"]
    body = ([k if k.startswith("`") else escape(k), escape(a), escape(b)] for k, a, b in pairs)
    return [f"<details><summary>{escape(summary)}</summary>", "", *pipe_table(head, body, [False, False, False]), "", "</details>", ""]


@register
class GitHubComparisonRenderer(ComparisonRenderer):
    name = "github"
    file_extension = "md"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        return render_github(comparison, options)
