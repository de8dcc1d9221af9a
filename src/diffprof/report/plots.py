"""Figures for reports: one function per plot, each returning PNG bytes or ``None`` when the cells
do not hold the data that plot needs (a suite without memory numbers gets no memory plot).

Figures use matplotlib's object API (``Figure`` drawn by the Agg canvas), never ``pyplot``: no
global figure state, so rendering is safe in threads and never opens a window. Each PNG carries a
``Description`` text chunk stating what the figure concludes (fitted exponents, the knee, the
Pareto-optimal settings); :func:`png_description` reads it back for captions, alt text and tests.

Axes are labels (as in the tables): :func:`time_by_label` plots any suite, the others specialise
one suite's question (how does cost scale with pixels, where does batching stop paying off).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from diffprof.report.artifacts import Span, cell_image, cell_timeline
from diffprof.report.tables import MEMORY_METRICS, format_value, metric_header, seconds_per_image, time_stats
from diffprof.results import METRIC_UNITS, CellResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
#: A batch reaching this fraction of the best throughput is "at the knee" (see :func:`find_knee`).
KNEE_FRACTION = 0.9
#: Largest scheduler x steps image grid drawn (beyond it, the generic capped grid is used).
MAX_GRID_CELLS = 96
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


# ---------------------------------------------------------------------------------------------
# Analysis behind the figures (pure functions, tested on their own)


@dataclass(frozen=True)
class PowerLaw:
    """``y = coefficient * x ** exponent``, fitted by least squares on log-log axes."""

    exponent: float
    coefficient: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.coefficient * np.power(x, self.exponent)


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> PowerLaw | None:
    """Fit ``y ∝ x^k`` (``numpy.polyfit`` of log y on log x); ``None`` without two distinct positive x.

    An exponent near 1 for time against pixels means cost grows with the pixel count (convolution
    bound); near 2 means attention over all latent positions dominates.
    """
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and a > 0 and b > 0]
    if len({a for a, _ in pairs}) < 2:
        return None
    lx = np.log([a for a, _ in pairs])
    ly = np.log([b for _, b in pairs])
    slope, intercept = np.polyfit(lx, ly, 1)
    return PowerLaw(float(slope), float(math.exp(intercept)))


@dataclass(frozen=True)
class Knee:
    """The smallest batch whose throughput is at least ``fraction`` of the best one measured."""

    batch: float
    throughput: float
    best: float
    fraction: float = KNEE_FRACTION


def find_knee(batches: Sequence[float], throughput: Sequence[float], fraction: float = KNEE_FRACTION) -> Knee | None:
    """Where batching stops paying: the smallest batch reaching ``fraction`` (90%) of the maximum
    images/s. Simpler than the kneedle method and it answers the practical question directly:
    larger batches buy at most 10% more throughput for proportionally more memory and latency."""
    points = sorted((b, t) for b, t in zip(batches, throughput) if t is not None and math.isfinite(t) and t > 0)
    if not points:
        return None
    best = max(t for _, t in points)
    for b, t in points:
        if t >= fraction * best:
            return Knee(b, t, best, fraction)
    return None  # pragma: no cover - the best point always qualifies


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats in both coordinates (lower is better in both)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


# ---------------------------------------------------------------------------------------------
# Figure plumbing


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Figure, description: str) -> bytes:
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


def _plain(text: str) -> str:
    """Text for matplotlib with ``$`` escaped, so user labels are never parsed as math."""
    return text.replace("$", r"\$")


def _time_unit(values: Sequence[float]) -> tuple[float, str]:
    top = max((abs(v) for v in values), default=1.0)
    if top < 1e-3:
        return 1e6, "µs"
    if top < 1.0:
        return 1e3, "ms"
    return 1.0, "s"


def _memory(cell: CellResult, metric: str) -> float | None:
    value = cell.metrics.get(metric)
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def _memory_metric(cells: Sequence[CellResult]) -> str | None:
    """The first of :data:`MEMORY_METRICS` that some of the cells measured."""
    for metric in MEMORY_METRICS:
        if any(_memory(c, metric) for c in cells):
            return metric
    return None


def _timed(cells: Sequence[CellResult]) -> list[tuple[CellResult, float]]:
    """The cells that succeeded and have a time per image, with that time."""
    out = []
    for cell in cells:
        t = seconds_per_image(cell)
        if cell.ok and t is not None and math.isfinite(t) and t > 0:
            out.append((cell, t))
    return out


def _iqr_bounds(cell: CellResult, centre: float) -> tuple[float, float]:
    """Distances from ``centre`` down to the 25th and up to the 75th percentile of s/image."""
    stats = time_stats(cell)
    if stats is None or stats.count < 2:
        return 0.0, 0.0
    q25, q75 = np.percentile(stats.samples, [25, 75])
    return max(0.0, centre - float(q25)), max(0.0, float(q75) - centre)


def _varying_labels(cells: Sequence[CellResult]) -> list[str]:
    keys: dict[str, None] = {}
    for c in cells:
        for k in c.labels:
            keys.setdefault(k, None)
    return [k for k in keys if len({format_value(c.labels.get(k)) for c in cells}) > 1]


def _short_label(cell: CellResult, keys: Sequence[str]) -> str:
    """The swept values alone (``fp16 / True``), for ticks and point labels beside an axis title."""
    if not keys:
        return cell.label
    return " / ".join(format_value(cell.labels.get(k)) for k in keys)


def _long_label(cell: CellResult, keys: Sequence[str]) -> str:
    """``precision=fp16, compile=True``: the swept values with their names, for descriptions."""
    if not keys:
        return cell.label
    return ", ".join(f"{k}={format_value(cell.labels.get(k))}" for k in keys)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# Plots


def time_by_label(cells: Sequence[CellResult], title: str | None = None) -> bytes | None:
    """Time per image against the swept axis: a line when one numeric axis varies (steps,
    guidance), bars otherwise (precision, tasks, pipelines); error bars span the IQR."""
    timed = _timed(cells)
    if not timed:
        return None
    keys = _varying_labels([c for c, _ in timed]) or _varying_labels(cells)
    title = title or ("Time per image by " + " / ".join(keys) if keys else "Time per image")
    numeric = len(keys) == 1 and all(_is_number(c.labels.get(keys[0])) for c, _ in timed) and len(timed) > 1
    if numeric:
        timed.sort(key=lambda ct: float(ct[0].labels[keys[0]]))
    scale, unit = _time_unit([t for _, t in timed])
    y = np.array([t for _, t in timed]) * scale
    err = np.array([_iqr_bounds(c, t) for c, t in timed]).T * scale
    fig, (ax,) = _figure(max(5.0, min(10.0, 1.0 + 0.7 * len(timed))), 3.4)
    if numeric:
        x = [float(c.labels[keys[0]]) for c, _ in timed]
        ax.errorbar(x, y, yerr=err, marker="o", color=_COLORS[0], capsize=3)
        ax.set_xlabel(_plain(keys[0]))
    else:
        names = [_plain(_short_label(c, keys)) for c, _ in timed]
        pos = np.arange(len(timed))
        ax.bar(pos, y, yerr=err, color=_COLORS[0], capsize=3)
        slanted = max(len(n) for n in names) > 8
        ax.set_xticks(pos, names, rotation=30 if slanted else 0, ha="right" if slanted else "center")
        if keys:
            ax.set_xlabel(_plain(" / ".join(keys)))
    ax.set_ylabel(f"time per image ({unit})")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(_plain(title))
    fastest, t = min(timed, key=lambda ct: ct[1])
    return _png(fig, f"{title}: fastest {_long_label(fastest, keys)} at {t:.4g} s per image (error bars: IQR)")


def scheduler_times(cells: Sequence[CellResult]) -> bytes | None:
    """Time per image for each scheduler (bars with IQR error bars): the ``schedulers`` suite."""
    return time_by_label(cells, "Time per image by scheduler")


def _pixels(cell: CellResult) -> float | None:
    w = cell.labels.get("width", cell.settings.get("width"))
    h = cell.labels.get("height", cell.settings.get("height"))
    if not (_is_number(w) and _is_number(h)) or w <= 0 or h <= 0:
        return None
    return float(w) * float(h)


def resolution_scaling(cells: Sequence[CellResult]) -> bytes | None:
    """Time and peak memory against pixel count on log-log axes, each with its fitted power law
    (the exponent says how cost scales: ~1 linear in pixels, ~2 attention-bound): ``resolutions``."""
    points = [(c, p, t) for c, t in _timed(cells) if (p := _pixels(c)) is not None]
    if len({p for _, p, _ in points}) < 2:
        return None
    mem_metric = _memory_metric([c for c, _, _ in points])
    panels: list[tuple[str, str, list[tuple[CellResult, float, float]]]] = [("time per image", "s", points)]
    if mem_metric:
        mem = [(c, p, m) for c, p, _ in points if (m := _memory(c, mem_metric)) is not None]
        if len({p for _, p, _ in mem}) >= 2:
            panels.append((metric_header(mem_metric), "GiB", [(c, p, m / 2**30) for c, p, m in mem]))
    fig, axes = _figure(5.0 * len(panels), 3.8, ncols=len(panels))
    found = []
    for ax, (name, unit, data), color in zip(axes, panels, _COLORS):
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
    return _png(fig, "; ".join(found) or "too few points to fit")


def memory_tradeoff(cells: Sequence[CellResult]) -> bytes | None:
    """Time per image against peak memory, one labelled point per memory optimization; the
    Pareto-optimal ones (nothing both faster and smaller) are filled: the ``memory`` suite."""
    timed = _timed(cells)
    metric = _memory_metric([c for c, _ in timed])
    if metric is None:
        return None
    points = [(c, m / 2**30, t) for c, t in timed if (m := _memory(c, metric)) is not None]
    if not points:
        return None
    keys = _varying_labels([c for c, _, _ in points])
    scale, unit = _time_unit([t for _, _, t in points])
    front = set(pareto_front([(m, t) for _, m, t in points]))
    fig, (ax,) = _figure(6.5, 4.2)
    for i, (c, m, t) in enumerate(points):
        filled = i in front
        ax.scatter([m], [t * scale], s=45, color=_COLORS[0], facecolors=_COLORS[0] if filled else "none", zorder=3)
        ax.annotate(_plain(_short_label(c, keys)), (m, t * scale), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{metric_header(metric)} (GiB)")
    ax.set_ylabel(f"time per image ({unit})")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(0, 1.2 * max(m for _, m, _ in points))  # room for the point labels
    ax.set_ylim(0, 1.1 * max(t for _, _, t in points) * scale)
    ax.set_title("Time vs memory per optimization (filled: Pareto-optimal)")
    best = "; ".join(_long_label(points[i][0], keys) for i in sorted(front))
    return _png(fig, f"Pareto-optimal: {best}")


def _batch(cell: CellResult) -> float | None:
    b = cell.labels.get("batch", cell.settings.get("batch"))
    return float(b) if _is_number(b) and b > 0 else None


def _throughput(cell: CellResult) -> float | None:
    value = cell.metrics.get("images_per_s")
    if value is not None and math.isfinite(value) and value > 0:
        return float(value)
    t = seconds_per_image(cell)
    return 1.0 / t if t else None


def batch_throughput(cells: Sequence[CellResult]) -> bytes | None:
    """Images/s against batch size with the knee marked (:func:`find_knee`): the ``batch`` suite."""
    points = sorted(
        (b, tp) for c in cells if c.ok and (b := _batch(c)) is not None and (tp := _throughput(c)) is not None
    )
    if len(points) < 2:
        return None
    knee = find_knee([b for b, _ in points], [t for _, t in points])
    fig, (ax,) = _figure(6.5, 3.8)
    ax.plot([b for b, _ in points], [t for _, t in points], "o-", color=_COLORS[0], label="images/s")
    ax.set_xscale("log", base=2)
    ax.set_xticks([b for b, _ in points], [f"{b:g}" for b, _ in points])
    description = "no knee"
    if knee is not None:
        ax.axhline(knee.fraction * knee.best, color="#999999", linestyle=":", label=f"{knee.fraction:.0%} of best")
        ax.axvline(knee.batch, color=_COLORS[3], linestyle="--", label=f"knee: batch {knee.batch:g}")
        ax.plot([knee.batch], [knee.throughput], "o", color=_COLORS[3], markersize=9, zorder=3)
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
    return _png(fig, description)


def step_timeline(spans: Sequence[Span] | None, title: str = "One call") -> bytes | None:
    """A Gantt chart of one call: a row per span name (text encoding, each denoising step, VAE
    decode...), wall time as bars and GPU time, where measured, as a darker inner bar."""
    if not spans:
        return None
    rows: dict[str, int] = {}
    for span in spans:
        rows.setdefault(span.name, len(rows))
    end = max(s.end_s for s in spans)
    scale, unit = _time_unit([end])
    fig, (ax,) = _figure(8.0, 1.2 + 0.45 * len(rows))
    has_gpu = False
    for span in spans:
        y = rows[span.name]
        color = _COLORS[y % len(_COLORS)]
        alpha = 0.55 if (span.step is not None and span.step % 2) else 0.85
        ax.barh(y, span.dur_s * scale, left=span.start_s * scale, height=0.6, color=color, alpha=alpha, edgecolor="white", linewidth=0.4)
        if span.gpu_s is not None:
            has_gpu = True
            ax.barh(y, min(span.gpu_s, span.dur_s) * scale, left=span.start_s * scale, height=0.22, color="#222222", alpha=0.6)
    ax.set_yticks(list(rows.values()), [_plain(n) for n in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"time since call start ({unit})")
    ax.set_xlim(0, end * scale * 1.02)
    ax.grid(axis="x", alpha=0.3)
    steps = [s for s in spans if s.name == "denoising_step"]
    note = f", {len(steps)} steps" if steps else ""
    ax.set_title(_plain(f"{title}: {end * scale:.4g} {unit}{note}" + (" (dark: GPU time)" if has_gpu else "")))
    totals = {}
    for span in spans:
        totals[span.name] = totals.get(span.name, 0.0) + span.dur_s
    share = ", ".join(f"{name} {t / end:.0%}" for name, t in totals.items()) if end > 0 else ""
    return _png(fig, f"{title}: {end:.4g} s; {share}")


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
    keys = _varying_labels([c for c, _ in images])
    for i, (cell, image) in enumerate(images):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(np.asarray(image))
        ax.set_axis_off()
        label = _long_label(cell, keys)
        ax.set_title(_plain(label if len(label) <= 40 else label[:39] + "…"), fontsize=8)
    names = "; ".join(_long_label(c, keys) for c, _ in images)
    return _png(fig, f"{len(images)} images: {names}")


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
    from diffprof.quality.pareto import pareto_front as front_of
    from diffprof.quality.pareto import quality_direction, quality_metric_of, tradeoff_points

    metric = quality_metric_of(cells)
    if metric is None:
        return None
    points = tradeoff_points(cells, metric)
    most = max((_prompt_count(p.cell) for p in points), default=0)
    points = [p for p in points if _prompt_count(p.cell) == most]
    if not points:
        return None
    direction = quality_direction(metric)
    front = front_of([p.seconds_per_image for p in points], [p.quality for p in points], direction)
    keys = _varying_labels([p.cell for p in points])
    scale, unit = _time_unit([p.seconds_per_image for p in points])
    finite = [p.quality for p in points if math.isfinite(p.quality)]
    cap = max(finite) + 1.0 if finite else 1.0  # infinite PSNR (an exact match) is drawn at the top
    y = [p.quality if math.isfinite(p.quality) else cap for p in points]
    fig, (ax,) = _figure(7.0, 4.4)
    on_front = set(front)
    for i, (p, q) in enumerate(zip(points, y)):
        filled = i in on_front
        ax.scatter([p.seconds_per_image * scale], [q], s=40, color=_COLORS[0], facecolors=_COLORS[0] if filled else "none", zorder=3)
        ax.annotate(_plain(_short_label(p.cell, keys)), (p.seconds_per_image * scale, q), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.step([points[i].seconds_per_image * scale for i in front], [y[i] for i in front], where="post", color=_COLORS[3], alpha=0.7, label="Pareto front")
    unit_text = METRIC_UNITS.get(metric, "")
    ax.set_xlabel(f"time per image ({unit})")
    ax.set_ylabel(_plain(metric + (f" ({unit_text})" if unit_text else "") + (", lower is better" if direction == "lower" else "")))
    if direction == "lower":
        ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if direction == "higher" else "upper right")
    prompts = f", {most} prompts" if most else ""
    ax.set_title(_plain(f"Time vs {metric}{prompts} (filled: Pareto front)"))
    best = "; ".join(
        f"{_long_label(points[i].cell, keys)} ({points[i].seconds_per_image:.3g} s, {points[i].quality:.4g})" for i in front
    )
    return _png(fig, f"Pareto front of time vs {metric}: {best}")


def _axis_value(cell: CellResult, key: str) -> Any:
    return cell.labels.get(key, cell.settings.get(key))


def scheduler_step_grid(cells: Sequence[CellResult], thumb_px: int = 128) -> bytes | None:
    """Generated images laid out scheduler (rows) x steps (columns), each with its quality:
    what fewer steps look like per scheduler, the ``quality`` suite's image grid."""
    from diffprof.quality.pareto import quality_metric_of

    images: dict[tuple[str, Any], tuple[CellResult, Any]] = {}
    for cell in cells:
        scheduler, steps = _axis_value(cell, "scheduler"), _axis_value(cell, "steps")
        if scheduler is None or not _is_number(steps) or not cell.ok:
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
                ax.set_ylabel(_plain(scheduler), fontsize=8)
            entry = images.get((scheduler, n))
            if entry is None:
                ax.text(0.5, 0.5, "-", ha="center", va="center", fontsize=10, color="#999999", transform=ax.transAxes)
                continue
            cell, image = entry
            ax.imshow(np.asarray(image))
            value = cell.metrics.get(metric) if metric else None
            if value is not None and not math.isnan(value):
                ax.set_xlabel(f"{metric} {value:.3g}", fontsize=7)
    return _png(
        fig,
        f"{len(images)} images: rows scheduler ({', '.join(schedulers)}), columns steps ({', '.join(f'{n:g}' for n in steps)})"
        + (f", each with its {metric}" if metric else ""),
    )


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
