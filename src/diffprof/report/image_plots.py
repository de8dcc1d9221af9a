"""Figures of what a call did and what it drew: the step timeline and the image grids.

Like :mod:`diffprof.report.plots`, each function returns a :class:`~diffprof.report.figure.Drawn`
or ``None`` when the cells lack what the figure needs: the timeline as a small hand-drawn SVG
(one per cell fits in a report), the image grids as PNG (photographs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffprof.analysis.pareto import quality_metric_of
from diffprof.report.artifacts import Span, cell_image
from diffprof.report.figure import COLORS, DPI, FONT, Drawn, xml_escape, is_number, long_label, plain, time_unit, to_png, varying_labels
from diffprof.report.format import format_metric, metric_header
from diffprof.results import CellResult
from diffprof.units import fmt_number, fmt_seconds

#: Largest scheduler x steps image grid drawn (beyond it, the generic capped grid is used).
MAX_GRID_CELLS = 96


def text_width(text: str, size: float) -> float:
    """Width in pixels of ``text`` in DejaVu Sans at ``size`` px (the font the SVG asks for)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(family="DejaVu Sans", size=size), ismath=False)
    return float(width)


def timeline_title(cell: CellResult, spans: Sequence[Span] | None) -> str:
    """``One call of steps=10: 10 steps (11 loop iterations)``: the steps asked for, and the loop's
    iterations when a solver takes more (PNDM's warm-up call, Heun's two evaluations per step)."""
    asked = cell.settings.get("steps", cell.labels.get("steps"))
    iterations = sum(1 for s in spans or () if s.name == "denoising_step")
    if is_number(asked):
        steps = f"{asked:g} step{'s' * (asked != 1)}"
        if iterations and iterations != asked:
            steps += f" ({iterations} loop iterations)"
    else:
        steps = f"{iterations} loop iterations" if iterations else ""
    return f"One call of {cell.label}" + (f": {steps}" if steps else "")


def step_timeline(spans: Sequence[Span] | None, title: str = "One call") -> Drawn | None:
    """A Gantt chart of one call as a small hand-drawn SVG: a row per span name (text encoding,
    each denoising step, each UNet call, VAE decode...), wall time as bars, GPU time where
    measured as a dark inner bar, each bar with its duration on hover. Drawn by hand, not by
    matplotlib, so a report can carry one per cell (a few KB each)."""
    if not spans:
        return None
    from matplotlib.ticker import MaxNLocator

    rows: dict[str, int] = {}
    for span in spans:
        rows.setdefault(span.name, len(rows))
    end = max(s.end_s for s in spans)
    scale, unit = time_unit([end])
    has_gpu = any(s.gpu_s is not None for s in spans)
    heading = f"{title} · {end * scale:.4g} {unit}" + (" · dark: GPU time" if has_gpu else "")
    width, row_h, top, bottom = 760.0, 18.0, 30.0, 36.0
    left = 10 + max(text_width(n, 11) for n in rows)
    plot_w = width - left - 16
    height = top + row_h * len(rows) + bottom
    size = 12.0
    while text_width(heading, size) > width - 12 and size > 8:
        size -= 0.5

    def x(t: float) -> float:
        return left + (t / end * plot_w if end > 0 else 0.0)

    out = [f'<svg class="timeline" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
           f'aria-label="{xml_escape(heading)}" style="font-family:{FONT}">',
           f'<text x="6" y="18" font-size="{size:g}" font-weight="bold">{xml_escape(heading)}</text>']
    ticks = [t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(0, end * scale) if 0 <= t <= end * scale * 1.0001]
    axis_y = top + row_h * len(rows)
    for t in ticks:
        tx = x(t / scale)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 2:.0f}" x2="{tx:.1f}" y2="{axis_y + 3:.0f}" stroke="#ddd"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 15:.0f}" font-size="10" text-anchor="middle">{fmt_number(t, 3)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{axis_y + 30:.0f}" font-size="10" text-anchor="middle">time since call start ({unit})</text>')
    for name, r in rows.items():
        out.append(f'<text x="{left - 6:.1f}" y="{top + r * row_h + 13:.0f}" font-size="11" text-anchor="end">{xml_escape(name)}</text>')
    for span in spans:
        r = rows[span.name]
        y = top + r * row_h + 3
        w = max(0.5, x(span.end_s) - x(span.start_s))
        color = COLORS[r % len(COLORS)]
        opacity = 0.55 if (span.step is not None and span.step % 2) else 0.85
        step = f" {span.step}" if span.step is not None else ""
        gpu = f", GPU {fmt_seconds(span.gpu_s)}" if span.gpu_s is not None else ""
        tip = f"{span.name}{step}: {fmt_seconds(span.dur_s)}{gpu}, from {fmt_seconds(span.start_s)}"
        out.append(f'<rect x="{x(span.start_s):.1f}" y="{y:.0f}" width="{w:.1f}" height="12" fill="{color}" fill-opacity="{opacity}">'
                   f"<title>{xml_escape(tip)}</title></rect>")
        if span.gpu_s is not None:
            g = max(0.5, min(span.gpu_s, span.dur_s) / end * plot_w if end > 0 else 0.0)
            out.append(f'<rect x="{x(span.start_s):.1f}" y="{y + 4:.0f}" width="{g:.1f}" height="4" fill="#222" fill-opacity="0.6"/>')
    out.append("</svg>")
    totals: dict[str, float] = {}
    for span in spans:
        if span.name != "unet":  # inside the steps: counted there
            totals[span.name] = totals.get(span.name, 0.0) + span.dur_s
    share = ", ".join(f"{name} {t / end:.0%}" for name, t in totals.items()) if end > 0 else ""
    return Drawn(f"{title}: {end:.4g} s; {share}", svg="".join(out))


def image_grid(cells: Sequence[CellResult], max_images: int = 24, thumb_px: int = 192) -> Drawn | None:
    """The cells' first images side by side, each titled with its cell label (thumbnails of at
    most ``thumb_px`` pixels, so a sweep of 1024 px images stays a small figure)."""
    images = []
    for cell in cells:
        if len(images) >= max_images:
            break
        image = cell_image(cell)
        if image is not None:
            image.thumbnail((thumb_px, thumb_px))
            images.append((cell, image))
    if not images:
        return None
    ncols = min(4, len(images))
    nrows = math.ceil(len(images) / ncols)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.3 * ncols, 2.6 * nrows), dpi=DPI, layout="constrained")
    keys = varying_labels([c for c, _ in images])
    for i, (cell, image) in enumerate(images):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(np.asarray(image))
        ax.set_axis_off()
        label = long_label(cell, keys)
        ax.set_title(plain(label if len(label) <= 40 else label[:39] + "…"), fontsize=8)
    names = "; ".join(long_label(c, keys) for c, _ in images)
    return to_png(fig, f"{len(images)} images: {names}")


def _axis_value(cell: CellResult, key: str) -> Any:
    return cell.labels.get(key, cell.settings.get(key))


def scheduler_step_grid(cells: Sequence[CellResult], thumb_px: int = 128) -> Drawn | None:
    """Generated images laid out scheduler (rows) x steps (columns), each with its quality:
    what fewer steps look like per scheduler, the ``quality`` suite's image grid."""
    images: dict[tuple[str, Any], tuple[CellResult, Any]] = {}
    for cell in cells:
        scheduler, steps = _axis_value(cell, "scheduler"), _axis_value(cell, "steps")
        if scheduler is None or not is_number(steps) or not cell.ok:
            continue
        image = cell_image(cell)
        if image is not None and (str(scheduler), steps) not in images:
            image.thumbnail((thumb_px, thumb_px))
            images[(str(scheduler), steps)] = (cell, image)
    if not images:
        return None
    schedulers = list(dict.fromkeys(s for s, _ in images))
    steps = sorted({n for _, n in images})
    if len(schedulers) * len(steps) > MAX_GRID_CELLS:
        return None  # too big to read: the caller falls back to the capped image grid
    metric = quality_metric_of([c for c, _ in images.values()])
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 1.45 * len(steps), 0.5 + 1.6 * len(schedulers)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(schedulers), len(steps), squeeze=False)
    for r, scheduler in enumerate(schedulers):
        for c, n in enumerate(steps):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(f"{n:g} step" + ("" if n == 1 else "s"), fontsize=8)
            if c == 0:
                ax.set_ylabel(plain(scheduler), fontsize=8)
            entry = images.get((scheduler, n))
            if entry is None:
                ax.text(0.5, 0.5, "-", ha="center", va="center", fontsize=10, color="#999999", transform=ax.transAxes)
                continue
            cell, image = entry
            ax.imshow(np.asarray(image))
            value = cell.metrics.get(metric) if metric else None
            if value is not None and not math.isnan(value):
                ax.set_xlabel(f"{metric_header(metric)} {format_metric(metric, value, 3)}", fontsize=7)
    return to_png(
        fig,
        f"{len(images)} images: rows scheduler ({', '.join(schedulers)}), columns steps ({', '.join(f'{n:g}' for n in steps)})"
        + (f", each with its {metric_header(metric)}" if metric else ""),
    )
