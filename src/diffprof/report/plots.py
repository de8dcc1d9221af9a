"""Figures for reports: one function per plot, each returning a :class:`~diffprof.report.figure.Drawn`
(inline SVG with a hover value per point) or ``None`` when the cells lack the data it needs.

Drawing only: the fits, the knee, the Pareto fronts and whether differences are within noise come
from :mod:`diffprof.analysis`; the figure plumbing (SVG, fitted axes, label placement) from
:mod:`diffprof.report.figure`. A figure never states more than the data carries: no exponent is
fitted and no front is drawn through differences within noise (the figure says so instead), and
host RSS, a process's peak so far that grows in run order, is never ranked as if it were each
option's memory.

Axes are labels (as in the tables): :func:`time_by_label` plots any suite, the others specialise
one suite's question. :func:`suite_plots` picks a suite's figures, timelines and image grids
(:mod:`diffprof.report.image_plots`) included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from diffprof.analysis.cells import batch_size, memory_metric_of, memory_value, pixels, throughput, time_stats, timed
from diffprof.analysis.fits import find_knee, power_law_fit
from diffprof.analysis.noise import MIN_MEMORY_CHANGE, any_pair, relative_range, times_differ, values_vary
from diffprof.analysis.pareto import comparable_points, memory_front, quality_front, quality_metric_of
from diffprof.metrics import direction_of
from diffprof.report.artifacts import cell_timeline
from diffprof.report.figure import (
    COLORS, Drawn, byte_unit, fit_axis, is_number, long_label, new_figure, place_labels, plain, short_label, ticks_fit, time_unit,
    to_svg, varying_labels,
)
from diffprof.report.format import format_metric, format_spread, join_limited, metric_header
from diffprof.report.image_plots import image_grid, scheduler_step_grid, step_timeline, timeline_title
from diffprof.results import CellResult

#: Raw samples are drawn as points up to this many per cell; quartile bars from 4 samples on.
MAX_DOTS, BARS_FROM = 10, 4
HOST_RSS = "host_peak_rss_bytes"
RSS_NOTE = ("Memory here is host RSS: the process's peak so far, which grows in run order whatever the option, "
            "so it does not rank the options (GPU runs measure each option's allocator peak).")


def _tip(cell: CellResult, keys: Sequence[str]) -> str:
    stats = time_stats(cell)
    t = format_spread("s_per_image", stats) if stats is not None and stats.count > 1 else format_metric("s_per_image", cell.metrics.get("s_per_image"))
    n = f" (n={stats.count})" if stats is not None else ""
    return f"{long_label(cell, keys)}: {t} per image{n}"


def _samples(ax, x: float, cell: CellResult, scale: float, width: float = 0.0) -> None:
    """The repeats themselves as small points (few of them), quartile bars from 4 on."""
    stats = time_stats(cell)
    if stats is None or stats.count < 2:
        return
    if stats.count <= MAX_DOTS:
        jitter = np.linspace(-width, width, stats.count) if width else np.zeros(stats.count)
        ax.plot(x + jitter, np.array(stats.samples) * scale, ".", color="#333333", markersize=3, alpha=0.7, zorder=4)
    if stats.count >= BARS_FROM:
        ax.plot([x, x], [stats.q1 * scale, stats.q3 * scale], "-", color="#333333", linewidth=1.5, zorder=4)


def _fastest(measured: list[tuple[CellResult, float]], keys: Sequence[str]) -> str:
    ranked = sorted(measured, key=lambda ct: ct[1])
    (best, t), rest = ranked[0], ranked[1:]
    text = f"fastest {long_label(best, keys)} at {format_metric('s_per_image', t)} per image"
    close = [c for c, u in rest if not times_differ(time_stats(best), time_stats(c), t, u)]
    return text + (f", within noise of {'; '.join(long_label(c, keys) for c in close[:3])}" if close else "")


def time_by_label(cells: Sequence[CellResult], title: str | None = None, note: str = "") -> Drawn | None:
    """Time per image against the swept axis: a line when one numeric axis varies (steps,
    guidance), bars otherwise (precision, tasks, pipelines); the repeats drawn as points."""
    measured = timed(cells)
    if not measured:
        return None
    keys = varying_labels([c for c, _ in measured]) or varying_labels(cells)
    title = title or ("Time per image by " + " / ".join(keys) if keys else "Time per image")
    numeric = len(keys) == 1 and all(is_number(c.labels.get(keys[0])) for c, _ in measured) and len(measured) > 1
    if numeric:
        measured.sort(key=lambda ct: float(ct[0].labels[keys[0]]))
    scale, unit = time_unit([t for _, t in measured])
    fig, (ax,) = new_figure(max(5.0, min(10.0, 1.5 + 0.6 * len(measured))), 3.4)
    tips, legend = {}, []
    if numeric:
        xs = [float(c.labels[keys[0]]) for c, _ in measured]
        ax.plot(xs, [t * scale for _, t in measured], "-", color=COLORS[0], zorder=2)
        for i, ((c, t), x) in enumerate(zip(measured, xs)):
            (mark,) = ax.plot([x], [t * scale], "o", color=COLORS[0], zorder=3)
            mark.set_gid(f"dp{i}")
            tips[f"dp{i}"] = _tip(c, keys)
            _samples(ax, x, c, scale)
        fit_axis(ax, "x", xs)
        ax.set_xlabel(plain(keys[0]))
        lows = [min([t, *(s.samples if (s := time_stats(c)) else [])]) * scale for c, t in measured]
        highs = [max([t, *(s.samples if (s := time_stats(c)) else [])]) * scale for c, t in measured]
        fit_axis(ax, "y", lows + highs)
    else:
        names = [plain(short_label(c, keys)) for c, _ in measured]
        pos = np.arange(len(measured))
        bars = ax.bar(pos, [t * scale for _, t in measured], color=COLORS[0], alpha=0.85, width=0.6)
        for i, (bar, (c, _)) in enumerate(zip(bars, measured)):
            bar.set_gid(f"dp{i}")
            tips[f"dp{i}"] = _tip(c, keys)
            _samples(ax, float(i), c, scale, width=0.12)
        ax.set_xticks(pos, names)
        if not ticks_fit(fig, ax):  # long names: numbers under the bars, the names in a legend table
            ax.set_xticks(pos, [str(i + 1) for i in pos])
            legend = [(str(i + 1), long_label(c, keys), format_metric("s_per_image", t)) for i, (c, t) in enumerate(measured)]
        tops = [max([t, *(s.samples if (s := time_stats(c)) else [])]) * scale for c, t in measured]
        fit_axis(ax, "y", tops, zero=True)
        if keys:
            ax.set_xlabel(plain(" / ".join(keys)))
    ax.set_ylabel(f"time per image ({unit})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(plain(title))
    what = "points: each repeat; bars: 25th-75th percentile when 4+ repeats"
    return to_svg(fig, f"{title}: {_fastest(measured, keys)} ({what})", tips, note, legend)


def scheduler_times(cells: Sequence[CellResult]) -> Drawn | None:
    """Time per image for each scheduler: the ``schedulers`` suite."""
    return time_by_label(cells, "Time per image by scheduler")


def _size_label(cell: CellResult, short: bool = False) -> str:
    """``512×768``; ``512²`` for a square when ``short`` (a tick has little room)."""
    w, h = cell.labels.get("width", cell.settings.get("width")), cell.labels.get("height", cell.settings.get("height"))
    return f"{w}²" if short and w == h else f"{w}×{h}"


def resolution_scaling(cells: Sequence[CellResult]) -> Drawn | None:
    """Time and peak memory against pixel count, each with its fitted power law (the exponent says
    how cost scales: ~1 linear in pixels, ~2 attention-bound) where the values differ beyond
    noise: the ``resolutions`` suite."""
    points = sorted(((c, p, t) for c, t in timed(cells) if (p := pixels(c)) is not None), key=lambda x: x[1])
    if len({p for _, p, _ in points}) < 2:
        return None
    mem_metric = memory_metric_of([c for c, _, _ in points])
    time_scale, time_name = time_unit([t for _, _, t in points])
    differ = any_pair(len(points), lambda i, j: times_differ(time_stats(points[i][0]), time_stats(points[j][0]), points[i][2], points[j][2]))
    panels = [("time per image", time_name, [(c, p, t * time_scale) for c, p, t in points], differ, "")]
    if mem_metric:
        mem = [(c, p, m) for c, p, _ in points if (m := memory_value(c, mem_metric)) is not None]
        if len({p for _, p, _ in mem}) >= 2:
            scale, name = byte_unit([m for _, _, m in mem])
            why = "host RSS (the process's peak so far)" if mem_metric == HOST_RSS else ""
            panels.append((metric_header(mem_metric), name, [(c, p, m * scale) for c, p, m in mem], values_vary([m for *_, m in mem], MIN_MEMORY_CHANGE) and not why, why))
    fig, axes = new_figure(5.2 * len(panels), 3.6, ncols=len(panels))
    found, tips, legend = [], {}, []
    for k, (ax, (name, unit, data, varies, why), color) in enumerate(zip(axes, panels, COLORS)):
        x = np.array([p for _, p, _ in data])
        y = np.array([v for _, _, v in data])
        for i, (c, p, v) in enumerate(data):
            (mark,) = ax.plot([p], [v], "o", color=color, zorder=3)
            mark.set_gid(f"dp{k}-{i}")
            tips[f"dp{k}-{i}"] = f"{_size_label(c)}: {v:.4g} {unit}"
        fit = power_law_fit(x, y) if varies else None
        if fit is not None:
            xs = np.geomspace(x.min(), x.max(), 50)
            ax.plot(xs, fit(xs), "--", color="#333333", label=f"fit ∝ pixels^{fit.exponent:.2f}")
            found.append(f"{name} exponent {fit.exponent:.2f}")
            ax.legend(fontsize=8, loc="upper left")
        else:
            spread = relative_range([v for *_, v in data])
            found.append(f"{name} varies by {spread:.0%}" + (f": {why}, not fitted" if why else " (within noise): no exponent fitted"))
        log = fit_axis(ax, "x", list(x))
        ax.set_xticks(list(x), [_size_label(c, short=True) for c, _, _ in data])
        if not ticks_fit(fig, ax):  # sizes too close on the axis: numbers, and the sizes in the key
            ax.set_xticks(list(x), [str(i + 1) for i in range(len(x))])
            legend = [(str(i + 1), _size_label(c), f"{p:.0f} pixels") for i, (c, p, _) in enumerate(data)]
        if log:
            ax.minorticks_off()
        fit_axis(ax, "y", list(y))
        ax.set_xlabel("image size (pixels" + (", log scale)" if log else ")"))
        ax.set_ylabel(f"{name} ({unit})")
        ax.grid(True, alpha=0.3)
        ax.set_title(plain(f"{name.capitalize()} vs pixels" + (f" (exponent {fit.exponent:.2f})" if fit else "")), fontsize=10)
    note = RSS_NOTE if mem_metric == HOST_RSS and len(panels) > 1 else ""
    return to_svg(fig, "; ".join(found), tips, note, legend)


def _numbered(fig, ax, points: Sequence[tuple[float, float, str, bool]], tips_of: Sequence[str]) -> tuple[dict[str, str], bool]:
    """Markers (filled when on the front) with a number beside each where it fits; ``(tips, all placed)``."""
    tips = {}
    for i, ((x, y, _, filled), tip) in enumerate(zip(points, tips_of)):
        mark = ax.scatter([x], [y], s=45, color=COLORS[0], facecolors=COLORS[0] if filled else "none", zorder=3)
        mark.set_gid(f"dp{i}")
        tips[f"dp{i}"] = tip
    placed = place_labels(fig, ax, [(x, y) for x, y, _, _ in points], [str(i + 1) for i in range(len(points))])
    return tips, all(placed)


def memory_tradeoff(cells: Sequence[CellResult]) -> Drawn | None:
    """Time per image against peak memory, one numbered point per memory optimization, the
    Pareto-optimal ones (nothing both faster and smaller) filled, where the differences are
    beyond noise: the ``memory`` suite. Host RSS ranks nothing: then only the times are drawn."""
    measured = timed(cells)
    metric = memory_metric_of([c for c, _ in measured])
    if metric is None:
        return None
    if metric == HOST_RSS:
        return time_by_label(cells, "Time per image by memory option (memory not ranked: host RSS)", note=RSS_NOTE)
    points = [(c, m, t) for c, t in measured if (m := memory_value(c, metric)) is not None]
    if not points:
        return None
    keys = varying_labels([c for c, _, _ in points])
    scale, unit = time_unit([t for _, _, t in points])
    mscale, munit = byte_unit([m for _, m, _ in points])
    judged = memory_front(points)
    fast, small = judged.times_differ, judged.values_differ
    front = set(judged.indices) | {i for tied in judged.ties.values() for i in tied}
    fig, (ax,) = new_figure(6.5, 4.2)
    xy = [(m * mscale, t * scale, short_label(c, keys), i in front) for i, (c, m, t) in enumerate(points)]
    tips, _ = _numbered(fig, ax, xy, [f"{i + 1}. {long_label(c, keys)}: {format_metric(metric, m)}, {format_metric('s_per_image', t)} per image"
                                      for i, (c, m, t) in enumerate(points)])
    fit_axis(ax, "x", [m for m, *_ in xy])
    fit_axis(ax, "y", [t for _, t, *_ in xy])
    ax.set_xlabel(f"{metric_header(metric)} ({munit})")
    ax.set_ylabel(f"time per image ({unit})")
    ax.grid(True, alpha=0.3)
    ax.set_title("Time vs memory per option" + (" (filled: Pareto-optimal)" if front else ""))
    legend = [(str(i + 1), long_label(c, keys), f"{format_metric(metric, m)}, {format_metric('s_per_image', t)}") for i, (c, m, t) in enumerate(points)]
    if front:
        return to_svg(fig, "Pareto-optimal: " + join_limited([long_label(points[i][0], keys) for i in sorted(front)], 6), tips, "", legend)
    what = "times and memory" if not fast and not small else ("times" if not fast else "memory")
    note = f"No Pareto front: the {what} of these options differ within noise."
    return to_svg(fig, note, tips, note, legend)


def batch_throughput(cells: Sequence[CellResult]) -> Drawn | None:
    """Images/s against batch size with the knee marked (:func:`find_knee`): the ``batch`` suite."""
    points = sorted((b, tp, c) for c in cells if c.ok and (b := batch_size(c)) is not None and (tp := throughput(c)) is not None)
    if len(points) < 2:
        return None
    knee = find_knee([b for b, _, _ in points], [t for _, t, _ in points])
    fig, (ax,) = new_figure(6.5, 3.8)
    ax.plot([b for b, _, _ in points], [t for _, t, _ in points], "-", color=COLORS[0], zorder=2)
    tips = {}
    for i, (b, t, c) in enumerate(points):
        (mark,) = ax.plot([b], [t], "o", color=COLORS[0], zorder=3)
        mark.set_gid(f"dp{i}")
        tips[f"dp{i}"] = f"batch {b:g}: {t:.3g} images/s ({_tip(c, ['batch'])})"
    description = "no knee"
    if knee is not None:
        ax.axhline(knee.fraction * knee.best, color="#999999", linestyle=":", label=f"{knee.fraction:.0%} of best")
        ax.axvline(knee.batch, color=COLORS[3], linestyle="--", label=f"knee: batch {knee.batch:g}")
        description = f"knee at batch {knee.batch:g}: {knee.throughput:.3g} images/s, {knee.throughput / knee.best:.0%} of the best {knee.best:.3g}"
    log = fit_axis(ax, "x", [b for b, _, _ in points], log=len(points) > 2 and points[-1][0] / points[0][0] >= 4)
    ax.set_xticks([b for b, _, _ in points], [f"{b:g}" for b, _, _ in points])
    if log:
        ax.minorticks_off()
    fit_axis(ax, "y", [t for _, t, _ in points] + ([knee.fraction * knee.best] if knee else []))
    ax.set_xlabel("batch size")
    ax.set_ylabel("images per second")
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    ax.set_title("Throughput vs batch size")
    return to_svg(fig, description, tips)


def quality_tradeoff(cells: Sequence[CellResult]) -> Drawn | None:
    """Time per image against quality, one numbered point per cell, the Pareto front (nothing both
    faster and better) filled and joined where the differences are beyond noise: the ``quality``,
    ``guidance`` and ``tune`` suites.

    The metric is the first of adherence, CLIP score, PSNR, SSIM, latent error the cells carry;
    only cells scored on the same number of prompts are comparable, so the plot keeps those scored
    on the most (tune's screens drop out). Up is always better (latent error's axis is flipped)."""
    name = quality_metric_of(cells)
    if name is None:
        return None
    points, most = comparable_points(cells, name)
    if not points:
        return None
    direction = direction_of(name)
    header = metric_header(name)
    keys = varying_labels([p.cell for p in points])
    judged = quality_front(points, name)
    fast, better, front = judged.times_differ, judged.values_differ, judged.indices
    picked = set(front) | {i for tied in judged.ties.values() for i in tied}
    scale, unit = time_unit([p.seconds_per_image for p in points])
    finite = [p.quality for p in points if math.isfinite(p.quality)]
    cap = max(finite) + 1.0 if finite else 1.0  # infinite PSNR (an exact match) is drawn at the top
    y = [p.quality if math.isfinite(p.quality) else cap for p in points]
    fig, (ax,) = new_figure(7.0, 4.4)
    xy = [(p.seconds_per_image * scale, q, short_label(p.cell, keys), i in picked) for i, (p, q) in enumerate(zip(points, y))]
    tips, _ = _numbered(fig, ax, xy, [f"{i + 1}. {long_label(p.cell, keys)}: {format_metric(name, p.quality)}, "
                                      f"{format_metric('s_per_image', p.seconds_per_image)} per image" for i, p in enumerate(points)])
    if front:
        ax.step([xy[i][0] for i in front], [y[i] for i in front], where="post", color=COLORS[3], alpha=0.7, zorder=2)
    fit_axis(ax, "x", [x for x, *_ in xy])
    fit_axis(ax, "y", y)
    ax.set_xlabel(f"time per image ({unit})")
    ax.set_ylabel(plain(header + (", lower is better" if direction == "lower" else "")))
    if direction == "lower":
        ax.invert_yaxis()
    ax.grid(True, alpha=0.3)
    prompts = f", {most} prompts" if most else ""
    ax.set_title(plain(f"Time vs {header}{prompts}" + (" (filled, joined: Pareto front)" if front else "")))
    legend = [(str(i + 1), long_label(p.cell, keys), f"{format_metric(name, p.quality)}, {format_metric('s_per_image', p.seconds_per_image)}")
              for i, p in enumerate(points)]
    if front:
        best = join_limited([f"{long_label(points[i].cell, keys)} ({format_metric('s_per_image', points[i].seconds_per_image)}, "
                             f"{format_metric(name, points[i].quality)})"
                             + (f", {len(judged.ties[i])} more within noise of it" if i in judged.ties else "") for i in front], 6)
        return to_svg(fig, f"Pareto front of time vs {header}: {best}", tips, "", legend)
    spread = f" ({header} spans {min(finite):.4g} to {max(finite):.4g})" if finite else ""
    what = f"the {header} differences{spread}" if fast else ("the times" if better else f"the times and {header} differences{spread}")
    note = f"No Pareto front: {what} are within noise."
    return to_svg(fig, note, tips, note, legend)


# ---------------------------------------------------------------------------------------------
# Which plots a suite gets

PlotFunction = Callable[[Sequence[CellResult]], "Drawn | None"]

#: Specialised plots per suite; any other suite gets :func:`time_by_label`.
SUITE_PLOTS: dict[str, tuple[PlotFunction, ...]] = {
    "schedulers": (scheduler_times,),
    "resolutions": (resolution_scaling,),
    "memory": (memory_tradeoff,),
    "batch": (batch_throughput,),
    "quality": (quality_tradeoff, time_by_label),
    "guidance": (time_by_label, quality_tradeoff),
    "tune": (quality_tradeoff,),
}

#: Image figures that replace the generic :func:`image_grid` for a suite.
SUITE_IMAGE_PLOTS: dict[str, PlotFunction] = {"quality": scheduler_step_grid}


@dataclass(frozen=True)
class Plot:
    """A drawn figure: ``kind`` names the function that drew it (html ids and tests use it)."""

    kind: str
    drawn: Drawn
    cell: str = ""

    @property
    def description(self) -> str:
        return self.drawn.description


def cell_timelines(cells: Sequence[CellResult]) -> list[Plot]:
    """The step timeline of every successful cell that kept one, in run order."""
    out = []
    for cell in cells:
        spans = cell_timeline(cell) if cell.ok else None
        drawn = step_timeline(spans, timeline_title(cell, spans)) if spans else None
        if drawn is not None:
            out.append(Plot("step_timeline", drawn, cell.label))
    return out


def suite_plots(suite: str, cells: Sequence[CellResult], artifacts: bool = True, max_images: int = 24) -> list[Plot]:
    """Every figure one suite's cells support: its analysis plots, then (``artifacts``) the step
    timeline of the first cell that kept one and the grid of generated images (the timelines of
    the other cells: :func:`cell_timelines`)."""
    plots = []
    for function in SUITE_PLOTS.get(suite, (time_by_label,)):
        drawn = function(cells)
        if drawn is not None:
            plots.append(Plot(function.__name__, drawn))
    if artifacts:
        plots += cell_timelines(cells)[:1]
        if max_images > 0:
            special = SUITE_IMAGE_PLOTS.get(suite)
            drawn = special(cells) if special is not None else None
            if drawn is not None and special is not None:
                plots.append(Plot(special.__name__, drawn))
            elif (grid := image_grid(cells, max_images=max_images)) is not None:
                plots.append(Plot("image_grid", grid))
    return plots
