"""Figure plumbing shared by the plots: a matplotlib ``Figure`` without ``pyplot``, drawn as inline
SVG that a page shows with no script, axes fitted to the data, and labels placed where they fit.

- :class:`Drawn` is what every plot function returns: the SVG (or, for photographs, PNG bytes),
  the sentence the figure concludes (caption and alt text), a note when the data cannot carry a
  conclusion ("differences within noise"), and the legend rows of numbered markers.
- :func:`to_svg` writes text as ``<text>`` (``svg.fonttype: none``, so a browser lays it out and
  a test can measure it), gives each marked artist a ``<title>`` (the value shown on hover, no
  JavaScript needed), and strips what an inline SVG must not carry (XML prolog, namespaces that
  read like URLs, metadata).
- :func:`fit_axis` puts an axis on a log scale only across a decade or more, never forces 0 on a
  narrow or log range, and prints ticks as plain numbers (``0.53``, ``2000``), never ``5.28×10⁻¹``.
- :func:`place_labels` puts short labels beside points where they collide with nothing, measured
  with the figure's renderer; what does not fit is left to the legend table.

Figures use matplotlib's object API (``Figure`` drawn by the Agg canvas), never ``pyplot``: no
global figure state, so rendering is safe in threads and never opens a window.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diffprof.report.format import format_value
from diffprof.results import CellResult
from diffprof.units import fmt_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
FONT = "'DejaVu Sans', sans-serif"
#: Past this ratio of largest to smallest value an axis is drawn on a log scale.
LOG_RATIO = 10.0


@dataclass(frozen=True)
class Drawn:
    """One drawn figure: ``svg`` (inline, text as ``<text>``) or ``png`` (photographs), what it
    concludes, a ``note`` when the data cannot carry a conclusion, and ``legend`` rows
    ``(marker, label, value)`` for numbered markers (the page prints them as a table)."""

    description: str
    svg: str | None = None
    png: bytes | None = None
    note: str = ""
    legend: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure on an Agg canvas (whose renderer measures text for :func:`place_labels`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


@contextmanager
def quiet_glyphs() -> Iterator[None]:
    """A label in a script the bundled font lacks draws as boxes; the caption keeps the text."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def to_svg(fig: Figure, description: str, tips: dict[str, str] | None = None, note: str = "",
           legend: Sequence[tuple[str, str, str]] = ()) -> Drawn:
    """The figure as inline SVG; ``tips`` maps an artist's gid (``artist.set_gid``) to its hover text."""
    import matplotlib

    salt = hashlib.sha1(description.encode()).hexdigest()[:8]
    buf = io.StringIO()
    with quiet_glyphs(), matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = _inline(buf.getvalue(), salt)
    for gid, text in (tips or {}).items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{xml_escape(text)}</title>', 1)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{xml_escape(description)}" ', 1)
    return Drawn(description, svg=svg, note=note, legend=tuple(legend))


def to_png(fig: Figure, description: str, note: str = "") -> Drawn:
    """Photographs (image grids) stay PNG: as SVG they would be base64 inside base64."""
    buf = io.BytesIO()
    with quiet_glyphs():
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Description": description, "Software": "diffprof"})
    return Drawn(description, png=buf.getvalue(), note=note)


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _inline(svg: str, salt: str) -> str:
    """What an SVG inside HTML keeps: no prolog, doctype, metadata or namespace URLs; ids made
    unique to this figure (two figures of one page must not share ``figure_1``); one short font list."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    svg = re.sub(r"font-family: [^;\"]*", f"font-family: {FONT}", svg)
    svg = re.sub(r'id="((?:figure|axes|patch|line2d|text|legend|matplotlib\.axis|xtick|ytick|PathCollection|LineCollection|'
                 r'PolyCollection|BarContainer|FillBetweenPolyCollection|image|container)[^"]*)"', rf'id="{salt}-\1"', svg)
    return re.sub(r"\n\s*", "\n", svg).strip()


# ---------------------------------------------------------------------------------------------
# Axes


def plain(text: str) -> str:
    """Text for matplotlib with ``$`` escaped, so user labels are never parsed as math."""
    return text.replace("$", r"\$")


def number_ticks(value: float, _pos: Any = None) -> str:
    """A tick label: a plain number with three figures at most (``0.53``, ``2000``)."""
    return fmt_number(value, 3)


def fit_axis(ax: Axes, which: str, values: Sequence[float], *, zero: bool = False, log: bool | None = None,
             formatter: Callable[[float, Any], str] = number_ticks) -> bool:
    """Scale and limits of one axis fitted to ``values``; True when it went logarithmic.

    ``zero`` (bars, whose length is the value) starts the axis at 0; otherwise the limits hug
    the data with a margin, so a 2% spread fills the axis instead of sitting in a corner. A log
    scale (``log=None``: decided here) needs positive values over at least :data:`LOG_RATIO`.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return False
    lo, hi = min(finite), max(finite)
    axis = ax.xaxis if which == "x" else ax.yaxis
    set_lim = ax.set_xlim if which == "x" else ax.set_ylim
    use_log = (lo > 0 and hi / lo >= LOG_RATIO) if log is None else (log and lo > 0)
    if use_log and not zero:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        set_lim(lo / 1.25, hi * 1.25)
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())
    else:
        span = hi - lo
        pad = 0.08 * span if span > 0 else 0.05 * (abs(hi) or 1.0)
        set_lim(0 if zero and lo >= 0 else lo - pad, hi + pad if not zero else max(hi, 0) * 1.08 or 1.0)
        axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(formatter))
    return bool(use_log and not zero)


# ---------------------------------------------------------------------------------------------
# Labels placed where they fit

_OFFSETS = ((6, 4), (6, -12), (-12, 4), (-12, -12), (0, 9), (0, -17), (10, -4), (-18, -4))


def place_labels(fig: Figure, ax: Axes, points: Sequence[tuple[float, float]], labels: Sequence[str], fontsize: float = 8) -> list[bool]:
    """Write ``labels[i]`` beside ``points[i]`` (data coordinates) at the first of a few offsets
    where its box overlaps no other label, no marker and stays inside the axes, measured with the
    figure's renderer after layout; returns which were written (the rest are left out)."""
    from matplotlib.transforms import Bbox

    with quiet_glyphs():
        fig.draw_without_rendering()  # settle the constrained layout first
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = [ax.transData.transform(p) for p in points]
    radius = 5.0
    taken: list[Bbox] = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in markers]
    placed = []
    for (x, y), label in zip(points, labels):
        done = False
        for dx, dy in _OFFSETS:
            text = ax.annotate(plain(label), (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize, color="#222222")
            text.set_in_layout(False)
            with quiet_glyphs():
                box = text.get_window_extent(renderer).padded(1.5)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                done = True
                break
            text.remove()
        placed.append(done)
    return placed


def ticks_fit(fig: Figure, ax: Axes, which: str = "x") -> bool:
    """True when no two tick labels of the axis overlap (measured after layout)."""
    with quiet_glyphs():
        fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    labels = (ax.get_xticklabels() if which == "x" else ax.get_yticklabels())
    boxes = [t.get_window_extent(renderer).padded(2) for t in labels if t.get_text()]
    return not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


# ---------------------------------------------------------------------------------------------
# Units and labels


def time_unit(values: Sequence[float]) -> tuple[float, str]:
    """The scale and unit that keep the largest of ``values`` (seconds) readable on an axis."""
    top = max((abs(v) for v in values), default=1.0)
    if top < 1e-3:
        return 1e6, "µs"
    if top < 1.0:
        return 1e3, "ms"
    return 1.0, "s"


def byte_unit(values: Sequence[float]) -> tuple[float, str]:
    """The binary unit that keeps the largest of ``values`` (bytes) under 1000."""
    top = max((abs(v) for v in values), default=1.0)
    for unit, scale in (("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)):
        if top >= 0.5 * scale:
            return 1 / scale, unit
    return 1.0, "B"


def varying_labels(cells: Sequence[CellResult]) -> list[str]:
    """The label keys whose values differ between the cells (what a figure's axis sweeps)."""
    keys: dict[str, None] = {}
    for c in cells:
        for k in c.labels:
            keys.setdefault(k, None)
    return [k for k in keys if len({format_value(c.labels.get(k)) for c in cells}) > 1]


def short_label(cell: CellResult, keys: Sequence[str]) -> str:
    """The swept values alone (``fp16 / True``), for ticks and point labels beside an axis title."""
    if not keys:
        return cell.label
    return " / ".join(format_value(cell.labels.get(k)) for k in keys)


def long_label(cell: CellResult, keys: Sequence[str]) -> str:
    """``precision=fp16, compile=True``: the swept values with their names, for descriptions."""
    if not keys:
        return cell.label
    return ", ".join(f"{k}={format_value(cell.labels.get(k))}" for k in keys)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def png_description(png: bytes) -> str:
    """The ``Description`` text chunk of a PNG made here ('' when absent)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return str(image.info.get("Description", ""))
