"""HTML: one self-contained file to mail or attach to an issue, answer first.

The page opens with the summary (:mod:`diffprof.report.summary`: the fastest setting per suite,
the knee, the Pareto picks, failures, and warnings about noise, implausible results and a busy
host); the run and its environment follow, folded; then the failures and one section per suite:
its table (scrolling inside its own box, a failed cell's reason in a full-width row under it),
its figures (inline SVG, values on hover) and the step timeline of every cell, folded.

Nothing is fetched when it opens: styles are inline, figures are inline SVG or base64 PNG, there
is no script, and a Content-Security-Policy forbids every other source
(:mod:`diffprof.report.html_parts`). All text from the run (labels, prompts, errors, the command)
is escaped.
"""

from __future__ import annotations

import json
import re
from html import escape

from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.report.environment import environment_items, machine_items, run_items
from diffprof.report.format import first_line, format_settings
from diffprof.report.html_parts import CSP, figure, findings_list, kv_table, page, scroll
from diffprof.report.plots import cell_timelines, suite_plots
from diffprof.report.summary import summarize
from diffprof.report.tables import SuiteTable, cells_by_suite, quality_note, suite_table
from diffprof.results import CellResult, RunInfo

__all__ = ["CSP", "HtmlRenderer", "render_html", "suite_ids"]


def suite_ids(suites: list[str]) -> dict[str, str]:
    """A distinct ``id`` attribute per suite, safe whatever characters the suite name holds."""
    ids: dict[str, str] = {}
    for suite in suites:
        base = "suite-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", suite).strip("-") or "unnamed")
        candidate, n = base, 2
        while candidate in ids.values():
            candidate, n = f"{base}-{n}", n + 1
        ids[suite] = candidate
    return ids


def _error_html(cell: CellResult) -> str:
    error = escape(first_line(cell.error) or "failed")
    if cell.error and "\n" in cell.error.strip():  # a traceback: folded under its first line
        error += f"<details><summary>full error</summary><pre>{escape(cell.error)}</pre></details>"
    return error


def _table(table: SuiteTable) -> str:
    """The suite's table; a failed cell's reason gets a row of its own, the table's full width."""
    columns = [c for c in table.columns if c.kind != "error"]
    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    body = []
    for row in table.rows:
        tds = "".join(f'<td class="{"num" if c.numeric else c.kind}">{escape(text)}</td>' for c, text in zip(columns, row.texts(columns)))
        body.append(f'<tr class="{"failed" if row.failed else "ok-row"}">{tds}</tr>')
        if row.failed:
            body.append(f'<tr class="reason"><td colspan="{len(columns)}">{_error_html(row.cell)}</td></tr>')
    return scroll(f'<table class="suite"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _failures(run: RunInfo) -> str:
    failed = run.failed_cells
    if not failed:
        return ""
    items = "".join(f"<tr><td>{escape(c.suite)}</td><td>{escape(c.label)}</td></tr><tr class=\"reason\"><td colspan=\"2\">{_error_html(c)}</td></tr>"
                    for c in failed)
    return (f'<section id="failures"><h2>Failures <span class="count">({len(failed)} of {len(run.cells)} cells)</span></h2>'
            + scroll(f"<table><thead><tr><th>suite</th><th>cell</th></tr></thead><tbody>{items}</tbody></table>") + "</section>")


def _summary(run: RunInfo) -> str:
    findings = [(f.kind, f.suite, f.text) for f in summarize(run)]
    ok = "" if run.failed_cells or not run.cells else f'<p class="ok">All {len(run.cells)} cells succeeded.</p>'
    return f'<section id="summary"><h2>Summary</h2>{findings_list(findings)}{ok}</section>'


def _environment(run: RunInfo) -> str:
    env = environment_items(run)
    parts = ['<section id="environment"><details><summary>Run and environment '
             f'<span class="count">({len(env)} entries)</span></summary>',
             '<div class="kvs">' + kv_table(run_items(run) + machine_items(run), "run") + kv_table(env, "env") + "</div>"]
    if run.config:
        config = json.dumps(run.config, indent=2, default=str, sort_keys=False)
        parts.append(f"<details><summary>configuration</summary><pre>{escape(config)}</pre></details>")
    return "".join(parts) + "</details></section>"


def _suite(suite: str, cells: list[CellResult], css_id: str, options: ReportOptions) -> str:
    table = suite_table(suite, cells)
    failed = f", {table.failed} failed" if table.failed else ""
    parts = [f'<section class="suite" id="{css_id}"><h2>{escape(suite)} <span class="count">({len(cells)} cells{failed})</span></h2>']
    note = quality_note(cells)
    common = {k: v for k, v in table.common.items() if not (note and k == "quality")}
    if common:
        parts.append(f'<p class="settings">Shared settings: {escape(format_settings(common, max_len=400))}</p>')
    if note:
        parts.append(f'<p class="quality">{escape(note)}</p>')
    if table.legend:
        parts.append(f'<p class="legend-note">{escape(table.legend)}</p>')
    parts += [f'<p class="note">Note: {escape(n)}</p>' for n in table.notes]
    parts += [f'<p class="warning">⚠ {escape(w)}</p>' for w in table.warnings]
    parts.append(_table(table))
    if options.plots:
        plots = suite_plots(suite, cells, artifacts=options.include_artifacts, max_images=options.max_images)
        if plots:
            parts.append('<div class="plots">' + "".join(figure(p.kind, p.drawn) for p in plots) + "</div>")
        timelines = cell_timelines(cells) if options.include_artifacts else []
        if len(timelines) > 1:
            parts.append(f"<details class=\"timelines\"><summary>Step timeline of every cell ({len(timelines)})</summary>"
                         + "".join(figure("cell_timeline", t.drawn) for t in timelines) + "</details>")
    return "".join(parts) + "</section>"


def render_html(run: RunInfo, options: ReportOptions | None = None) -> str:
    options = options or ReportOptions()
    title = options.title_for(run)
    suites = cells_by_suite(run)
    ids = suite_ids(list(suites))
    counts = f"{len(run.cells)} cells" + (f", {len(run.failed_cells)} failed" if run.failed_cells else "")
    meta = " · ".join(x for x in (f"run #{run.id}", run.status, run.created_at or "", counts, run.command or "") if x)
    body = [
        f"<header><h1>{escape(title)}</h1><p class=\"meta\">{escape(meta)}</p>",
        "<nav>" + "".join(f'<a href="#{ids[s]}">{escape(s)}</a>' for s in suites) + "</nav></header>",
        _summary(run),
        _environment(run),
        _failures(run),
    ]
    body += [_suite(suite, cells, ids[suite], options) for suite, cells in suites.items()]
    if not run.cells:
        body.append("<p>No cells in this run.</p>")
    return page(title, body)


@register
class HtmlRenderer(Renderer):
    name = "html"
    file_extension = "html"

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str:
        return render_html(run, options)
