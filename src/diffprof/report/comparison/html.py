"""HTML: one self-contained page comparing run B with run A, cell by cell.

Like the run report (:mod:`diffprof.report.html`): inline styles, no script, a Content-Security-Policy
forbidding every other source, all text escaped. Each cell's row carries a small inline SVG: the
threshold band (grey), every round of A (hollow) and of B (filled) relative to A's geometric mean,
and B's change with its interval, coloured by verdict. Below the table: both runs' machine states
and the environment fields that differ.
"""

from __future__ import annotations

import math
from html import escape

from diffprof.analysis.compare import CellComparison, Comparison
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register
from diffprof.report.comparison.rows import HEADERS, caption_lines, comparison_rows, environment_rows, heading, machine_rows
from diffprof.report.html_parts import page, scroll

COLOURS = {"regression": "#c62828", "improvement": "#2e7d32", "host busy": "#8e24aa", "too noisy": "#b7791f", "not significant": "#b7791f"}
NUMERIC = {"A", "B", "change", "interval", "p (adj.)", "n"}
WIDTH, HEIGHT = 220, 26

#: The comparison's own styles, on top of the run report's (:data:`~diffprof.report.html_parts.STYLE`).
_STYLE = """
.summary{font-weight:600}li.warning{color:#8a4b00}td.note{color:#555;font-size:.9rem;min-width:14rem;overflow-wrap:anywhere}
td{vertical-align:middle}tr.regression td.verdict{color:#c62828;font-weight:600}tr.improvement td.verdict{color:#2e7d32;font-weight:600}
tr.host-busy td.verdict{color:#8e24aa}tr.too-noisy td.verdict,tr.not-significant td.verdict{color:#b7791f}td.verdict{white-space:nowrap}
td svg{display:block}table.pairs td{overflow-wrap:anywhere}table.pairs td:first-child{white-space:nowrap}
"""


def _x(log_value: float, span: float) -> float:
    return WIDTH / 2 + (WIDTH / 2 - 6) * max(-1.0, min(1.0, log_value / span))


def interval_svg(cell: CellComparison, threshold: float) -> str:
    """The row's picture: threshold band, rounds of A and B, B's change and interval (log scale)."""
    a = [v for v in cell.values_a if v > 0 and math.isfinite(v)]
    b = [v for v in cell.values_b if v > 0 and math.isfinite(v)]
    if not a or cell.ratio is None or not math.isfinite(cell.ratio) or cell.ratio <= 0:
        return ""
    centre = sum(map(math.log, a)) / len(a)
    points = [math.log(v) - centre for v in a + b] + [math.log(cell.ratio)]
    if cell.low and cell.high and math.isfinite(cell.high):
        points += [math.log(cell.low), math.log(cell.high)]
    band = math.log1p(threshold)
    span = max(2 * band, *(abs(p) for p in points)) * 1.1 or 0.1
    colour = COLOURS.get(cell.verdict, "#555")
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(cell.verdict)}">',
        f'<rect x="{_x(-band, span):.1f}" y="2" width="{_x(band, span) - _x(-band, span):.1f}" height="{HEIGHT - 4}" fill="#eee"/>',
        f'<line x1="{WIDTH / 2}" y1="2" x2="{WIDTH / 2}" y2="{HEIGHT - 2}" stroke="#bbb"/>',
    ]
    parts += [f'<circle cx="{_x(math.log(v) - centre, span):.1f}" cy="8" r="2.5" fill="none" stroke="#777"/>' for v in a]
    parts += [f'<circle cx="{_x(math.log(v) - centre, span):.1f}" cy="18" r="2.5" fill="{colour}" fill-opacity=".5"/>' for v in b]
    if cell.low and cell.high and math.isfinite(cell.high):
        parts.append(f'<line x1="{_x(math.log(cell.low), span):.1f}" y1="13" x2="{_x(math.log(cell.high), span):.1f}" y2="13" stroke="{colour}" stroke-width="2"/>')
    parts.append(f'<rect x="{_x(math.log(cell.ratio), span) - 3:.1f}" y="10" width="6" height="6" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _pairs_table(title: str, rows: list[tuple[str, str, str]], css_id: str) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(a)}</td><td>{escape(b)}</td></tr>" for k, a, b in rows)
    table = f'<table class="pairs"><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>{body}</tbody></table>'
    return f'<section id="{css_id}"><h2>{escape(title)}</h2>{scroll(table)}</section>'


def render_comparison_html(comparison: Comparison, options: CompareOptions | None = None) -> str:
    options = options or CompareOptions()
    title = options.title_for(comparison)
    caption = caption_lines(comparison)
    picture = HEADERS.index("change")  # the row's picture beside the numbers it draws, before the long note
    names = [*HEADERS[:picture], "A (○) against B (●), threshold band grey", *HEADERS[picture:]]
    head = "".join(f"<th>{escape(h)}</th>" for h in names)
    rows = []
    for row in comparison_rows(comparison):
        tds = []
        for name, text in zip(HEADERS, row.texts):
            css = "num" if name in NUMERIC else ("verdict" if name == "verdict" else ("note" if name == "note" else ""))
            tds.append(f'<td class="{css}">{escape(text)}</td>')
        tds.insert(picture, f"<td>{interval_svg(row.cell, comparison.threshold)}</td>")
        rows.append(f'<tr class="{row.verdict.replace(" ", "-")}" data-verdict="{escape(row.verdict)}">{"".join(tds)}</tr>')
    body = [
        f"<header><h1>{escape(title)}</h1><p class=\"meta\">{escape(heading(comparison))}</p></header>",
        f'<p class="summary" id="summary">{escape(caption[0])}</p>',
        "<ul>" + "".join(f'<li class="{"warning" if line.startswith("warning:") else "info"}">{escape(line)}</li>' for line in caption[1:]) + "</ul>" if len(caption) > 1 else "",
        f'<section id="cells"><h2>Cells</h2>{scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{chr(10).join(rows)}</tbody></table>")}</section>',
        _pairs_table("Machine state", machine_rows(comparison), "machine"),
        _pairs_table("Environment differences", environment_rows(comparison), "environment"),
    ]
    return page(title, [p for p in body if p], _STYLE)


@register
class HtmlComparisonRenderer(ComparisonRenderer):
    name = "html"
    file_extension = "html"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        return render_comparison_html(comparison, options)
