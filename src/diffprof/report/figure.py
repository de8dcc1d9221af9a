"""Figure plumbing shared by the plots: a matplotlib ``Figure`` without ``pyplot``, PNG bytes that
carry what they conclude, and the label texts figures name cells by.

Figures use matplotlib's object API (``Figure`` drawn by the Agg canvas), never ``pyplot``: no
global figure state, so rendering is safe in threads and never opens a window. Each PNG carries a
``Description`` text chunk stating what the figure concludes; :func:`png_description` reads it
back for captions, alt text and tests.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from diffprof.report.format import format_value
from diffprof.results import CellResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def to_png(fig: Figure, description: str) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # a label in a script the bundled font lacks draws as boxes; the caption keeps the text
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Description": description, "Software": "diffprof"})
    return buf.getvalue()


def png_description(png: bytes) -> str:
    """The ``Description`` text chunk of a PNG made here ('' when absent)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return str(image.info.get("Description", ""))


def plain(text: str) -> str:
    """Text for matplotlib with ``$`` escaped, so user labels are never parsed as math."""
    return text.replace("$", r"\$")


def time_unit(values: Sequence[float]) -> tuple[float, str]:
    """The scale and unit that keep the largest of ``values`` (seconds) readable on an axis."""
    top = max((abs(v) for v in values), default=1.0)
    if top < 1e-3:
        return 1e6, "µs"
    if top < 1.0:
        return 1e3, "ms"
    return 1.0, "s"


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
