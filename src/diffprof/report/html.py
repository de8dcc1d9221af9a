"""HTML: one self-contained file to mail or attach to an issue.

Nothing is fetched when it opens: styles are inline, figures and images are base64 PNG data URIs,
there is no script, and a Content-Security-Policy forbids every other source, so a report that
somehow referenced the network would show a broken image rather than leak a request. All text
from the run (labels, prompts, errors, the command) is escaped.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from html import escape

from diffprof import __version__
from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.report.environment import environment_items, machine_items, run_items
from diffprof.report.format import first_line, format_settings
from diffprof.report.plots import Plot, suite_plots
from diffprof.report.tables import SuiteTable, cells_by_suite, quality_note, suite_table
from diffprof.results import RunInfo

#: Only inline styles and data: images; no scripts, fonts, frames or connections.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;color:#1b1b1b}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top}th{background:#f4f4f4;text-align:left}
td.num{text-align:right;white-space:nowrap}table.kv td:first-child{color:#555;white-space:nowrap}
tr.failed td{color:#b00020;background:#fff3f3}td.noise{color:#8a6d00}
.settings,.quality,.note{color:#555;font-size:.9rem}pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap}
.kvs,.plots{display:flex;flex-wrap:wrap;gap:0 2rem;align-items:flex-start}figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}nav a{margin-right:1rem}.ok{color:#1a7f37}
footer{margin-top:3rem;color:#888;font-size:.8rem}p.warning{color:#8a4b00;background:#fff8e1;padding:.3rem .6rem}
"""


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


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png_size(png: bytes) -> tuple[int, int] | None:
    if len(png) >= 24 and png[12:16] == b"IHDR":
        return struct.unpack(">II", png[16:24])
    return None


def _kv_table(items: list[tuple[str, str]], css_id: str) -> str:
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in items)
    return f'<table class="kv" id="{css_id}">{rows}</table>'


def _table(table: SuiteTable) -> str:
    head = "".join(f"<th>{escape(c.header)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        tds = []
        for col, text in zip(table.columns, row.texts(table.columns)):
            css = "num" if col.numeric else col.kind
            title = f' title="{escape(row.cell.error)}"' if col.kind == "error" and row.cell.error else ""
            tds.append(f'<td class="{css}"{title}>{escape(text)}</td>')
        body.append(f'<tr class="{"failed" if row.failed else "ok-row"}">{"".join(tds)}</tr>')
    return f"<table class=\"suite\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(plot: Plot) -> str:
    description = plot.description
    size = _png_size(plot.png)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return (
        f'<figure class="plot" data-plot="{escape(plot.kind)}">'
        f'<img src="{data_uri(plot.png)}" alt="{escape(description)}"{dims}>'
        f"<figcaption>{escape(description)}</figcaption></figure>"
    )


def _failures(run: RunInfo) -> str:
    failed = run.failed_cells
    if not failed:
        return f'<section id="failures"><h2>Failures</h2><p class="ok">All {len(run.cells)} cells succeeded.</p></section>'
    items = []
    for cell in failed:
        error = escape(first_line(cell.error) or "failed")
        if cell.error and "\n" in cell.error.strip():  # a traceback: folded under its first line
            error += f"<details><summary>full error</summary><pre>{escape(cell.error)}</pre></details>"
        items.append(f"<tr><td>{escape(cell.suite)}</td><td>{escape(cell.label)}</td><td>{error}</td></tr>")
    return (
        f'<section id="failures"><h2>Failures ({len(failed)} of {len(run.cells)} cells)</h2>'
        f"<table><thead><tr><th>suite</th><th>cell</th><th>error</th></tr></thead><tbody>{''.join(items)}</tbody></table></section>"
    )


def render_html(run: RunInfo, options: ReportOptions | None = None) -> str:
    options = options or ReportOptions()
    title = options.title_for(run)
    suites = cells_by_suite(run)
    ids = suite_ids(list(suites))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        "<nav>" + "".join(f'<a href="#{ids[s]}">{escape(s)}</a>' for s in suites) + "</nav></header>",
        '<section id="environment"><h2>Run and environment</h2>',
        "".join(f'<p class="warning">Warning: {escape(v)}</p>' for k, v in machine_items(run) if k == "warning"),
        '<div class="kvs">' + _kv_table(run_items(run) + machine_items(run), "run") + _kv_table(environment_items(run), "env") + "</div>",
    ]
    if run.config:
        config = json.dumps(run.config, indent=2, default=str, sort_keys=False)
        parts.append(f"<details><summary>configuration</summary><pre>{escape(config)}</pre></details>")
    parts.append("</section>")
    parts.append(_failures(run))
    for suite, cells in suites.items():
        table = suite_table(suite, cells)
        parts.append(f'<section class="suite" id="{ids[suite]}"><h2>{escape(suite)}</h2>')
        note = quality_note(cells)
        common = {k: v for k, v in table.common.items() if not (note and k == "quality")}
        if common:
            parts.append(f'<p class="settings">Shared settings: {escape(format_settings(common, max_len=200))}</p>')
        if note:
            parts.append(f'<p class="quality">{escape(note)}</p>')
        parts += [f'<p class="note">Note: {escape(n)}</p>' for n in table.notes]
        parts.append(_table(table))
        if options.plots:
            plots = suite_plots(suite, cells, artifacts=options.include_artifacts, max_images=options.max_images)
            if plots:
                parts.append('<div class="plots">' + "".join(_figure(p) for p in plots) + "</div>")
        parts.append("</section>")
    if not run.cells:
        parts.append("<p>No cells in this run.</p>")
    parts.append(f"<footer>diffprof {escape(__version__)}</footer></body></html>")
    return "\n".join(parts) + "\n"


@register
class HtmlRenderer(Renderer):
    name = "html"
    file_extension = "html"

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str:
        return render_html(run, options)
