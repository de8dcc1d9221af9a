"""Figures of what a call did and what it drew: the step timeline and the image grids.

Like :mod:`diffprof.report.plots`, each function returns PNG bytes (with a ``Description`` chunk)
or ``None`` when the cells lack what the figure needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffprof.analysis.pareto import quality_metric_of
from diffprof.report.artifacts import Span, cell_image
from diffprof.report.figure import COLORS, DPI, is_number, long_label, new_figure, plain, time_unit, to_png, varying_labels
from diffprof.results import CellResult

#: Largest scheduler x steps image grid drawn (beyond it, the generic capped grid is used).
MAX_GRID_CELLS = 96


def step_timeline(spans: Sequence[Span] | None, title: str = "One call") -> bytes | None:
    """A Gantt chart of one call: a row per span name (text encoding, each denoising step, VAE
    decode...), wall time as bars and GPU time, where measured, as a darker inner bar."""
    if not spans:
        return None
    rows: dict[str, int] = {}
    for span in spans:
        rows.setdefault(span.name, len(rows))
    end = max(s.end_s for s in spans)
    scale, unit = time_unit([end])
    fig, (ax,) = new_figure(8.0, 1.2 + 0.45 * len(rows))
    has_gpu = False
    for span in spans:
        y = rows[span.name]
        color = COLORS[y % len(COLORS)]
        alpha = 0.55 if (span.step is not None and span.step % 2) else 0.85
        ax.barh(y, span.dur_s * scale, left=span.start_s * scale, height=0.6, color=color, alpha=alpha, edgecolor="white", linewidth=0.4)
        if span.gpu_s is not None:
            has_gpu = True
            ax.barh(y, min(span.gpu_s, span.dur_s) * scale, left=span.start_s * scale, height=0.22, color="#222222", alpha=0.6)
    ax.set_yticks(list(rows.values()), [plain(n) for n in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"time since call start ({unit})")
    ax.set_xlim(0, end * scale * 1.02)
    ax.grid(axis="x", alpha=0.3)
    steps = [s for s in spans if s.name == "denoising_step"]
    note = f", {len(steps)} steps" if steps else ""
    ax.set_title(plain(f"{title}: {end * scale:.4g} {unit}{note}" + (" (dark: GPU time)" if has_gpu else "")))
    totals = {}
    for span in spans:
        totals[span.name] = totals.get(span.name, 0.0) + span.dur_s
    share = ", ".join(f"{name} {t / end:.0%}" for name, t in totals.items()) if end > 0 else ""
    return to_png(fig, f"{title}: {end:.4g} s; {share}")


def image_grid(cells: Sequence[CellResult], max_images: int = 24, thumb_px: int = 192) -> bytes | None:
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


def scheduler_step_grid(cells: Sequence[CellResult], thumb_px: int = 128) -> bytes | None:
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
                ax.set_xlabel(f"{metric} {value:.3g}", fontsize=7)
    return to_png(
        fig,
        f"{len(images)} images: rows scheduler ({', '.join(schedulers)}), columns steps ({', '.join(f'{n:g}' for n in steps)})"
        + (f", each with its {metric}" if metric else ""),
    )
