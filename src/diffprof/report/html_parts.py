"""The pieces every diffprof HTML page is made of: the page shell (policy, styles), figures, tables
that scroll on their own, key-value blocks and the summary list.

A run report (:mod:`diffprof.report.html`) and a comparison report build their pages from these,
so both look alike and both keep the same guarantees: nothing is fetched when the page opens (the
Content-Security-Policy allows inline styles and ``data:`` images only, no script), every text
from a run is escaped, figures are inline SVG whose ``<title>`` elements show values on hover, and
a table wider than the page scrolls inside its own box instead of widening the page.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Sequence
from html import escape

from diffprof import __version__
from diffprof.report.figure import Drawn

#: Only inline styles and data: images; no scripts, fonts, frames or connections.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;color:#1b1b1b}
h1{font-size:1.6rem;margin:.4rem 0 .2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
h2 .count{font-weight:normal;color:#666;font-size:1rem}
.meta{color:#555;margin:.2rem 0;overflow-wrap:anywhere}nav{margin:.4rem 0}nav a{margin-right:1rem;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%;margin:.5rem 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top}th{background:#f4f4f4;text-align:left;white-space:nowrap}
td.num{text-align:right;white-space:nowrap}td.label,td.status,td.noise{white-space:nowrap}td.noise{color:#8a6d00}
tr.failed td{color:#b00020;background:#fff3f3}tr.reason td{color:#b00020;background:#fff3f3;white-space:normal;overflow-wrap:anywhere}
tr.reason pre{color:#333}
table.kv td{overflow-wrap:anywhere}table.kv td:first-child{color:#555;white-space:nowrap}
.settings,.quality,.note,.legend-note{color:#555;font-size:.9rem;overflow-wrap:anywhere}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.kvs{display:flex;flex-wrap:wrap;gap:0 2rem;align-items:flex-start}.kvs>table{max-width:100%}
.plots{display:flex;flex-wrap:wrap;gap:0 2rem;align-items:flex-start}
figure{margin:1rem 0;max-width:100%}figure svg,figure img{max-width:100%;height:auto;border:1px solid #eee;display:block}
figcaption{color:#555;font-size:.9rem;max-width:60rem}figure .plot-note{color:#8a6d00;font-size:.9rem;margin:.2rem 0}
table.legend{font-size:.85rem;margin-top:.3rem}
details{margin:.5rem 0}summary{cursor:pointer;color:#333}
#summary ul{padding-left:1.2rem}#summary li{margin:.15rem 0}#summary li.warning{color:#8a6d00}#summary li.failure{color:#b00020}
#summary .suite-name{font-weight:600}
p.warning{color:#8a6d00;overflow-wrap:anywhere}.ok{color:#1a7f37}footer{margin-top:3rem;color:#888;font-size:.8rem}
@media (max-width:1000px){body{padding:.6rem 1rem}}
"""


def page(title: str, body: Iterable[str], style: str = "") -> str:
    """A whole self-contained page: the policy, the styles (and a page's own ``style``), ``body`` and a footer."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}{style}</style></head><body>",
    ]
    return "\n".join([*head, *body, f"<footer>diffprof {escape(__version__)}</footer></body></html>"]) + "\n"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_size(png: bytes) -> tuple[int, int] | None:
    if len(png) >= 24 and png[12:16] == b"IHDR":
        return struct.unpack(">II", png[16:24])
    return None


def figure(kind: str, drawn: Drawn, extra: str = "") -> str:
    """One figure: inline SVG (or a PNG image), its caption, the note that limits what it says
    and the legend table of its numbered markers."""
    if drawn.svg is not None:
        body = drawn.svg
    else:
        size = png_size(drawn.png or b"")
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        body = f'<img src="{data_uri(drawn.png or b"")}" alt="{escape(drawn.description)}"{dims}>'
    note = f'<p class="plot-note">{escape(drawn.note)}</p>' if drawn.note and drawn.note != drawn.description else ""
    legend = ""
    if drawn.legend:
        rows = "".join(f"<tr><td>{escape(n)}</td><td>{escape(label)}</td><td class=\"num\">{escape(value)}</td></tr>" for n, label, value in drawn.legend)
        legend = f'<div class="scroll"><table class="legend"><thead><tr><th>#</th><th>setting</th><th>value</th></tr></thead><tbody>{rows}</tbody></table></div>'
        if len(drawn.legend) > 8:  # a long key folds, so the next figure is not pages away
            legend = f"<details><summary>key to the numbers ({len(drawn.legend)})</summary>{legend}</details>"
    return (f'<figure class="plot" data-plot="{escape(kind)}"{extra}>{body}'
            f"<figcaption>{escape(drawn.description)}</figcaption>{note}{legend}</figure>")


def kv_table(items: Sequence[tuple[str, str]], css_id: str) -> str:
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in items)
    return f'<table class="kv" id="{css_id}">{rows}</table>'


def scroll(table_html: str) -> str:
    """A table in its own horizontal scroll box: a wide sweep never widens the page."""
    return f'<div class="scroll">{table_html}</div>'


def findings_list(findings: Sequence[tuple[str, str | None, str]]) -> str:
    """``(kind, suite, text)`` items as the summary list: answers, failures, warnings."""
    items = []
    for kind, suite, text in findings:
        where = f'<span class="suite-name">{escape(suite)}</span>: ' if suite else ""
        mark = "⚠ " if kind == "warning" else ("✗ " if kind == "failure" else "")
        items.append(f'<li class="{escape(kind)}">{mark}{where}{escape(text)}</li>')
    return "<ul>" + "".join(items) + "</ul>" if items else '<p class="ok">Nothing to report.</p>'
