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

from diffprof import __version__
from diffprof.analysis.compare import CellComparison, Comparison
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register
from diffprof.report.comparison.rows import HEADERS, caption_lines, comparison_rows, environment_rows, heading, machine_rows
from diffprof.report.html import CSP

COLOURS = {"regression": "#c62828", "improvement": "#2e7d32", "host busy": "#8e24aa", "too noisy": "#b7791f", "not significant": "#b7791f"}
NUMERIC = {"A", "B", "change", "interval", "p (adj.)", "n"}
WIDTH, HEIGHT = 220, 26

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1300px;padding:1rem 2rem;color:#1b1b1b}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:middle}th{background:#f4f4f4;text-align:left}
td.num{text-align:right;white-space:nowrap}.summary{font-weight:600}.warning{color:#8a4b00}
tr.regression td.verdict{color:#c62828;font-weight:600}tr.improvement td.verdict{color:#2e7d32;font-weight:600}
tr.host-busy td.verdict{color:#8e24aa}tr.too-noisy td.verdict,tr.not-significant td.verdict{color:#b7791f}
tr.failed td{color:#b00020;background:#fff3f3}.note{color:#555;font-size:.9rem}svg{display:block}
footer{margin-top:3rem;color:#888;font-size:.8rem}
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
    return f'<section id="{css_id}"><h2>{escape(title)}</h2><table><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>{body}</tbody></table></section>'


def render_comparison_html(comparison: Comparison, options: CompareOptions | None = None) -> str:
    options = options or CompareOptions()
    title = options.title_for(comparison)
    caption = caption_lines(comparison)
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS) + "<th>A (○) against B (●), threshold band grey</th>"
    body = []
    for row in comparison_rows(comparison):
        tds = []
        for name, text in zip(HEADERS, row.texts):
            css = "num" if name in NUMERIC else ("verdict" if name == "verdict" else ("note" if name == "note" else ""))
            tds.append(f'<td class="{css}">{escape(text)}</td>')
        tds.append(f"<td>{interval_svg(row.cell, comparison.threshold)}</td>")
        body.append(f'<tr class="{row.verdict.replace(" ", "-")}" data-verdict="{escape(row.verdict)}">{"".join(tds)}</tr>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1><p>{escape(heading(comparison))}</p></header>",
        f'<p class="summary" id="summary">{escape(caption[0])}</p>',
        "<ul>" + "".join(f'<li class="{"warning" if line.startswith("warning:") else "info"}">{escape(line)}</li>' for line in caption[1:]) + "</ul>" if len(caption) > 1 else "",
        f'<section id="cells"><h2>Cells</h2><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></section>',
        _pairs_table("Machine state", machine_rows(comparison), "machine"),
        _pairs_table("Environment differences", environment_rows(comparison), "environment"),
        f"<footer>diffprof {escape(__version__)}</footer></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


@register
class HtmlComparisonRenderer(ComparisonRenderer):
    name = "html"
    file_extension = "html"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        return render_comparison_html(comparison, options)
