"""Markdown for a GitHub Actions job summary (``>> $GITHUB_STEP_SUMMARY``): the verdict in the
heading, the verdict table, what was only in one run, and the environment diff (folded).

GitHub-flavoured markdown: pipe tables, ``<details>`` for the long parts; cell text is escaped
(:func:`diffprof.report.markdown.escape`) since labels, errors and versions may hold ``|`` or HTML.
"""

from __future__ import annotations

from diffprof.analysis.compare import Comparison
from diffprof.report.comparison import ComparisonOptions, ComparisonRenderer, change_text, register_comparison
from diffprof.report.format import format_metric
from diffprof.report.markdown import escape, pipe_table

#: A mark per verdict, so the table reads at a glance (and without colour).
MARKS = {
    "regression": "❌",
    "improvement": "🚀",
    "same": "✅",
    "not significant": "❔",
    "failed": "💥",
    "missing": "➖",
}
#: Cells named per side in the "Only in" lines before "and N more".
_MAX_UNMATCHED = 10


def render_github(comparison: Comparison, options: ComparisonOptions | None = None) -> str:
    c = comparison
    label_a, label_b = (options or ComparisonOptions()).labels(c)
    better = "lower" if c.direction == "lower" else "higher"
    if c.has_regression:
        n = len(c.regressions) + len(c.newly_failed)
        headline = f"❌ {n} regression{'s' if n != 1 else ''}"
    else:
        headline = "✅ no regression"
    lines = [
        f"### diffprof compare: {headline}",
        "",
        f"**{escape(label_b)}** against the baseline **{escape(label_a)}** · `{c.metric}` ({better} is better) · "
        f"threshold {100 * c.threshold:g}% · alpha {c.alpha:g}",
        "",
    ]
    rows = []
    for cell in c.cells:
        p = "-" if cell.p_value is None else f"{cell.p_value:.2g}"
        n = f"{cell.n_a}/{cell.n_b}" if cell.n_a or cell.n_b else "-"
        note = cell.note
        if cell.settings_changes:
            changed = ", ".join(f"{k} {va}→{vb}" for k, (va, vb) in list(cell.settings_changes.items())[:3])
            note = "; ".join(filter(None, [note, f"settings differ: {changed}"]))
        rows.append([
            escape(cell.suite), escape(cell.label), format_metric(c.metric, cell.value_a), format_metric(c.metric, cell.value_b),
            change_text(cell), p, n, f"{MARKS.get(cell.verdict, '')} {cell.verdict}", escape(note),
        ])  # fmt: skip
    if rows:
        lines += pipe_table(["suite", "cell", "A", "B", "change", "p", "n", "verdict", "note"], rows,
                            [False, False, True, True, True, True, True, False, False])
        lines.append("")
    summary = f"**{escape(c.summary())}**"
    if c.geomean_ratio is not None:
        summary += f" · geometric mean B/A {c.geomean_ratio:.3f}"
    lines += [summary, ""]
    for side, cells in ((label_a, c.only_a), (label_b, c.only_b)):
        if cells:
            names = ", ".join(f"{escape(x.suite)} {escape(x.label)}" for x in cells[:_MAX_UNMATCHED])
            more = f" and {len(cells) - _MAX_UNMATCHED} more" if len(cells) > _MAX_UNMATCHED else ""
            lines += [f"Only in {escape(side)}: {names}{more}", ""]
    if c.environment_changes:
        count = len(c.environment_changes)
        lines += [f"<details><summary>Environment: {count} difference{'s' if count != 1 else ''}</summary>", ""]
        env_rows = [[f"`{escape(k)}`", escape(_text(va)), escape(_text(vb))] for k, (va, vb) in c.environment_changes.items()]
        lines += pipe_table(["", f"A: {escape(label_a)}", f"B: {escape(label_b)}"], env_rows, [False, False, False])
        lines += ["", "</details>", ""]
    else:
        lines += ["Environment: the same software and hardware in both runs.", ""]
    return "\n".join(lines)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


@register_comparison
class GitHubRenderer(ComparisonRenderer):
    name = "github"
    file_extension = "md"

    def render(self, comparison: Comparison, options: ComparisonOptions | None = None) -> str:
        return render_github(comparison, options)
