"""Figures for reports: one function per plot, each returning PNG bytes or ``None`` when the cells
do not hold the data that plot needs (a suite without memory numbers gets no memory plot).

Drawing only: the fits, the knee and the Pareto fronts come from :mod:`diffprof.analysis`, the
figure plumbing from :mod:`diffprof.report.figure`, and each PNG's ``Description`` chunk states
what the figure concludes (fitted exponents, the knee, the Pareto-optimal settings).

Axes are labels (as in the tables): :func:`time_by_label` plots any suite, the others specialise
one suite's question (how does cost scale with pixels, where does batching stop paying off).
:func:`suite_plots` picks a suite's figures, the step timeline and image grids
(:mod:`diffprof.report.image_plots`) included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from diffprof.analysis.cells import batch_size, iqr_bounds, memory_metric_of, memory_value, pixels, throughput, timed
from diffprof.analysis.fits import find_knee, power_law_fit
from diffprof.analysis.pareto import pareto_front, quality_metric_of, tradeoff_points
from diffprof.metrics import direction_of
from diffprof.report.artifacts import cell_timeline
from diffprof.report.figure import COLORS, is_number, long_label, new_figure, plain, png_description, short_label, time_unit, to_png, varying_labels
from diffprof.report.format import metric_header
from diffprof.report.image_plots import image_grid, scheduler_step_grid, step_timeline
from diffprof.results import CellResult


def time_by_label(cells: Sequence[CellResult], title: str | None = None) -> bytes | None:
    """Time per image against the swept axis: a line when one numeric axis varies (steps,
    guidance), bars otherwise (precision, tasks, pipelines); error bars span the IQR."""
    measured = timed(cells)
    if not measured:
        return None
    keys = varying_labels([c for c, _ in measured]) or varying_labels(cells)
    title = title or ("Time per image by " + " / ".join(keys) if keys else "Time per image")
    numeric = len(keys) == 1 and all(is_number(c.labels.get(keys[0])) for c, _ in measured) and len(measured) > 1
    if numeric:
        measured.sort(key=lambda ct: float(ct[0].labels[keys[0]]))
    scale, unit = time_unit([t for _, t in measured])
    y = np.array([t for _, t in measured]) * scale
    err = np.array([iqr_bounds(c, t) for c, t in measured]).T * scale
    fig, (ax,) = new_figure(max(5.0, min(10.0, 1.0 + 0.7 * len(measured))), 3.4)
    if numeric:
        x = [float(c.labels[keys[0]]) for c, _ in measured]
        ax.errorbar(x, y, yerr=err, marker="o", color=COLORS[0], capsize=3)
        ax.set_xlabel(plain(keys[0]))
    else:
        names = [plain(short_label(c, keys)) for c, _ in measured]
        pos = np.arange(len(measured))
        ax.bar(pos, y, yerr=err, color=COLORS[0], capsize=3)
        slanted = max(len(n) for n in names) > 8
        ax.set_xticks(pos, names, rotation=30 if slanted else 0, ha="right" if slanted else "center")
        if keys:
            ax.set_xlabel(plain(" / ".join(keys)))
    ax.set_ylabel(f"time per image ({unit})")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(plain(title))
    fastest, t = min(measured, key=lambda ct: ct[1])
    return to_png(fig, f"{title}: fastest {long_label(fastest, keys)} at {t:.4g} s per image (error bars: IQR)")


def scheduler_times(cells: Sequence[CellResult]) -> bytes | None:
    """Time per image for each scheduler (bars with IQR error bars): the ``schedulers`` suite."""
    return time_by_label(cells, "Time per image by scheduler")


def resolution_scaling(cells: Sequence[CellResult]) -> bytes | None:
    """Time and peak memory against pixel count on log-log axes, each with its fitted power law
    (the exponent says how cost scales: ~1 linear in pixels, ~2 attention-bound): ``resolutions``."""
    points = [(c, p, t) for c, t in timed(cells) if (p := pixels(c)) is not None]
    if len({p for _, p, _ in points}) < 2:
        return None
    mem_metric = memory_metric_of([c for c, _, _ in points])
    panels: list[tuple[str, str, list[tuple[CellResult, float, float]]]] = [("time per image", "s", points)]
    if mem_metric:
        mem = [(c, p, m) for c, p, _ in points if (m := memory_value(c, mem_metric)) is not None]
        if len({p for _, p, _ in mem}) >= 2:
            panels.append((metric_header(mem_metric), "GiB", [(c, p, m / 2**30) for c, p, m in mem]))
    fig, axes = new_figure(5.0 * len(panels), 3.8, ncols=len(panels))
    found = []
    for ax, (name, unit, data), color in zip(axes, panels, COLORS):
        x = np.array([p for _, p, _ in data])
        y = np.array([v for _, _, v in data])
        fit = power_law_fit(x, y)
        ax.loglog(x, y, "o", color=color, label="measured")
        for c, p, v in data:
            w = c.labels.get("width", c.settings.get("width"))
            h = c.labels.get("height", c.settings.get("height"))
            ax.annotate(f"{w}×{h}", (p, v), textcoords="offset points", xytext=(4, -10), fontsize=7)
        if fit is not None:
            xs = np.geomspace(x.min(), x.max(), 50)
            ax.loglog(xs, fit(xs), "--", color="#333333", label=f"fit ∝ pixels^{fit.exponent:.2f}")
            found.append(f"{name} exponent {fit.exponent:.2f}")
        ax.set_xlabel("pixels per image")
        ax.set_ylabel(f"{name} ({unit})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{name.capitalize()} vs pixels" + (f" (exponent {fit.exponent:.2f})" if fit else ""))
    return to_png(fig, "; ".join(found) or "too few points to fit")


def memory_tradeoff(cells: Sequence[CellResult]) -> bytes | None:
    """Time per image against peak memory, one labelled point per memory optimization; the
    Pareto-optimal ones (nothing both faster and smaller) are filled: the ``memory`` suite."""
    measured = timed(cells)
    metric = memory_metric_of([c for c, _ in measured])
    if metric is None:
        return None
    points = [(c, m / 2**30, t) for c, t in measured if (m := memory_value(c, metric)) is not None]
    if not points:
        return None
    keys = varying_labels([c for c, _, _ in points])
    scale, unit = time_unit([t for _, _, t in points])
    front = set(pareto_front([t for _, _, t in points], [m for _, m, _ in points], direction="lower"))
    fig, (ax,) = new_figure(6.5, 4.2)
    for i, (c, m, t) in enumerate(points):
        filled = i in front
        ax.scatter([m], [t * scale], s=45, color=COLORS[0], facecolors=COLORS[0] if filled else "none", zorder=3)
        ax.annotate(plain(short_label(c, keys)), (m, t * scale), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{metric_header(metric)} (GiB)")
    ax.set_ylabel(f"time per image ({unit})")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(0, 1.2 * max(m for _, m, _ in points))  # room for the point labels
    ax.set_ylim(0, 1.1 * max(t for _, _, t in points) * scale)
    ax.set_title("Time vs memory per optimization (filled: Pareto-optimal)")
    best = "; ".join(long_label(points[i][0], keys) for i in sorted(front))
    return to_png(fig, f"Pareto-optimal: {best}")


def batch_throughput(cells: Sequence[CellResult]) -> bytes | None:
    """Images/s against batch size with the knee marked (:func:`find_knee`): the ``batch`` suite."""
    points = sorted(
        (b, tp) for c in cells if c.ok and (b := batch_size(c)) is not None and (tp := throughput(c)) is not None
    )
    if len(points) < 2:
        return None
    knee = find_knee([b for b, _ in points], [t for _, t in points])
    fig, (ax,) = new_figure(6.5, 3.8)
    ax.plot([b for b, _ in points], [t for _, t in points], "o-", color=COLORS[0], label="images/s")
    ax.set_xscale("log", base=2)
    ax.set_xticks([b for b, _ in points], [f"{b:g}" for b, _ in points])
    description = "no knee"
    if knee is not None:
        ax.axhline(knee.fraction * knee.best, color="#999999", linestyle=":", label=f"{knee.fraction:.0%} of best")
        ax.axvline(knee.batch, color=COLORS[3], linestyle="--", label=f"knee: batch {knee.batch:g}")
        ax.plot([knee.batch], [knee.throughput], "o", color=COLORS[3], markersize=9, zorder=3)
        description = (
            f"knee at batch {knee.batch:g}: {knee.throughput:.3g} images/s, "
            f"{knee.throughput / knee.best:.0%} of the best {knee.best:.3g}"
        )
    ax.set_xlabel("batch size")
    ax.set_ylabel("images per second")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Throughput vs batch size")
    return to_png(fig, description)


def _prompt_count(cell: CellResult) -> int:
    about = cell.settings.get("quality")
    prompts = about.get("prompts") if isinstance(about, dict) else None
    return int(prompts) if isinstance(prompts, int) and not isinstance(prompts, bool) else 0


def quality_tradeoff(cells: Sequence[CellResult]) -> bytes | None:
    """Time per image against quality, one labelled point per cell, the Pareto front (nothing
    both faster and better) filled and joined: the ``quality``, ``guidance`` and ``tune`` suites.

    The metric is the first of adherence, CLIP score, PSNR, SSIM, latent error the cells carry;
    only cells scored on the same number of prompts are comparable, so the plot keeps those
    scored on the most (tune's screens drop out). Up is always better (latent error's axis is
    flipped)."""
    name = quality_metric_of(cells)
    if name is None:
        return None
    points = tradeoff_points(cells, name)
    most = max((_prompt_count(p.cell) for p in points), default=0)
    points = [p for p in points if _prompt_count(p.cell) == most]
    if not points:
        return None
    direction = direction_of(name)
    front = pareto_front([p.seconds_per_image for p in points], [p.quality for p in points], direction)
    keys = varying_labels([p.cell for p in points])
    scale, unit = time_unit([p.seconds_per_image for p in points])
    finite = [p.quality for p in points if math.isfinite(p.quality)]
    cap = max(finite) + 1.0 if finite else 1.0  # infinite PSNR (an exact match) is drawn at the top
    y = [p.quality if math.isfinite(p.quality) else cap for p in points]
    fig, (ax,) = new_figure(7.0, 4.4)
    on_front = set(front)
    for i, (p, q) in enumerate(zip(points, y)):
        filled = i in on_front
        ax.scatter([p.seconds_per_image * scale], [q], s=40, color=COLORS[0], facecolors=COLORS[0] if filled else "none", zorder=3)
        ax.annotate(plain(short_label(p.cell, keys)), (p.seconds_per_image * scale, q), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.step([points[i].seconds_per_image * scale for i in front], [y[i] for i in front], where="post", color=COLORS[3], alpha=0.7, label="Pareto front")
    ax.set_xlabel(f"time per image ({unit})")
    ax.set_ylabel(plain(metric_header(name) + (", lower is better" if direction == "lower" else "")))
    if direction == "lower":
        ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if direction == "higher" else "upper right")
    prompts = f", {most} prompts" if most else ""
    ax.set_title(plain(f"Time vs {name}{prompts} (filled: Pareto front)"))
    best = "; ".join(
        f"{long_label(points[i].cell, keys)} ({points[i].seconds_per_image:.3g} s, {points[i].quality:.4g})" for i in front
    )
    return to_png(fig, f"Pareto front of time vs {name}: {best}")


# ---------------------------------------------------------------------------------------------
# Which plots a suite gets

PlotFunction = Callable[[Sequence[CellResult]], "bytes | None"]

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
    png: bytes

    @property
    def description(self) -> str:
        return png_description(self.png)


def suite_plots(suite: str, cells: Sequence[CellResult], artifacts: bool = True, max_images: int = 24) -> list[Plot]:
    """Every figure one suite's cells support: its analysis plots, then (``artifacts``) the step
    timeline of the first cell that kept one and the grid of generated images."""
    plots = []
    for function in SUITE_PLOTS.get(suite, (time_by_label,)):
        png = function(cells)
        if png is not None:
            plots.append(Plot(function.__name__, png))
    if artifacts:
        with_timeline = next(((c, t) for c in cells if c.ok and (t := cell_timeline(c))), None)
        if with_timeline is not None:
            cell, spans = with_timeline
            png = step_timeline(spans, f"One call of {cell.label}")
            if png is not None:
                plots.append(Plot("step_timeline", png))
        if max_images > 0:
            special = SUITE_IMAGE_PLOTS.get(suite)
            png = special(cells) if special is not None else None
            if png is not None and special is not None:
                plots.append(Plot(special.__name__, png))
            else:
                png = image_grid(cells, max_images=max_images)
                if png is not None:
                    plots.append(Plot("image_grid", png))
    return plots
