"""The answer first: what a run found, in a few sentences every report opens with.

Per suite its answer (the fastest setting, and whether the next ones are within noise of it; the
batch knee; the Pareto picks of time against memory or quality, or that there are none beyond
noise; how cost scales with pixels), then the failures, then what should make a reader doubt the
numbers: noisy cells, results that cannot be right (:mod:`diffprof.analysis.sanity`) and a busy
host. Every number comes from :mod:`diffprof.analysis`, the same functions the figures draw, so a
summary never disagrees with its plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from diffprof.analysis.cells import batch_size, is_noisy, memory_metric_of, memory_value, pixels, throughput, time_stats, timed
from diffprof.analysis.fits import find_knee, power_law_fit
from diffprof.analysis.noise import any_pair, times_differ
from diffprof.analysis.pareto import Front, comparable_points, memory_front, quality_front, quality_metric_of
from diffprof.analysis.sanity import run_flags
from diffprof.report.figure import long_label, varying_labels
from diffprof.report.format import first_line, format_metric, join_limited, metric_header
from diffprof.report.tables import cells_by_suite
from diffprof.results import CellResult, RunInfo

FindingKind = Literal["answer", "failure", "warning"]
HOST_RSS = "host_peak_rss_bytes"


@dataclass(frozen=True)
class Finding:
    """One sentence of the summary; ``suite`` is ``None`` for the run as a whole."""

    kind: FindingKind
    text: str
    suite: str | None = None


def _time(seconds: float) -> str:
    return format_metric("s_per_image", seconds)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fastest(cells: Sequence[CellResult]) -> str | None:
    """``fastest: scheduler=dpmpp_2m at 834 ms per image (unipc within noise)``."""
    measured = timed(cells)
    if len(measured) < 2:
        return None
    keys = varying_labels([c for c, _ in measured])
    ranked = sorted(measured, key=lambda ct: ct[1])
    (best, t), rest = ranked[0], ranked[1:]
    close = [c for c, u in rest if not times_differ(time_stats(best), time_stats(c), t, u)]
    slowest = ranked[-1][1]
    text = f"fastest {long_label(best, keys)} at {_time(t)} per image"
    if close:
        names = join_limited([long_label(c, keys) for c in close], 3, ", ")
        text += f"; within noise of it: {names}"
    elif slowest > t:
        text += f", {slowest / t:.2g}x faster than the slowest"
    return text


def _ties(front: Front, i: int) -> str:
    tied = len(front.ties.get(i, ()))
    return f"; {tied} more within noise of it" if tied else ""


def _knee(cells: Sequence[CellResult]) -> str | None:
    points = sorted((b, tp) for c in cells if c.ok and (b := batch_size(c)) is not None and (tp := throughput(c)) is not None)
    knee = find_knee([b for b, _ in points], [t for _, t in points]) if len(points) >= 2 else None
    if knee is None:
        return None
    return f"batching stops paying at batch {knee.batch:g} ({knee.throughput:.3g} images/s, {knee.throughput / knee.best:.0%} of the best {knee.best:.3g})"


def _memory(cells: Sequence[CellResult]) -> str | None:
    measured = timed(cells)
    metric = memory_metric_of([c for c, _ in measured])
    if metric is None:
        return None
    if metric == HOST_RSS:
        return "memory is host RSS here (the process's peak so far, growing in run order): it does not rank the options"
    points = [(c, m, t) for c, t in measured if (m := memory_value(c, metric)) is not None]
    keys = varying_labels([c for c, _, _ in points])
    front = memory_front(points)
    if not front.indices:
        what = " and ".join(w for w, differ in (("time", front.times_differ), ("memory", front.values_differ)) if not differ)
        return f"no Pareto front of time against {metric_header(metric)}: the {what} differences are within noise"
    picks = join_limited([f"{long_label(points[i][0], keys)} ({format_metric(metric, points[i][1])}, {_time(points[i][2])}{_ties(front, i)})"
                          for i in front.indices])
    return f"Pareto picks, time against {metric_header(metric)}: {picks}"


def _quality(cells: Sequence[CellResult]) -> str | None:
    name = quality_metric_of(cells)
    if name is None:
        return None
    points, _ = comparable_points(cells, name)
    if len(points) < 2:
        return None
    keys = varying_labels([p.cell for p in points])
    front = quality_front(points, name)
    header = metric_header(name)
    if not front.indices:
        what = " and ".join(w for w, differ in (("time", front.times_differ), (header, front.values_differ)) if not differ)
        return f"no Pareto front of time against {header}: the {what} differences are within noise"
    picks = join_limited([f"{long_label(points[i].cell, keys)} ({header} {format_metric(name, points[i].quality)}, "
                          f"{_time(points[i].seconds_per_image)}{_ties(front, i)})" for i in front.indices])
    return f"Pareto picks, time against {header}: {picks}"


def _scaling(cells: Sequence[CellResult]) -> str | None:
    points = [(p, t, c) for c, t in timed(cells) if (p := pixels(c)) is not None]
    if len({p for p, _, _ in points}) < 2:
        return None
    if not any_pair(len(points), lambda i, j: times_differ(time_stats(points[i][2]), time_stats(points[j][2]), points[i][1], points[j][1])):
        return "time per image does not change with the size beyond noise"
    fit = power_law_fit([p for p, _, _ in points], [t for _, t, _ in points])
    return None if fit is None else f"time per image grows as pixels^{fit.exponent:.2f}"


#: What a suite's question is answered by, besides its fastest setting.
ANSWERS = {"batch": (_knee,), "memory": (_memory,), "resolutions": (_scaling,), "quality": (_quality,), "guidance": (_quality,), "tune": (_quality,)}


def summarize(run: RunInfo) -> list[Finding]:
    """The findings of a run: answers per suite, then failures, then warnings."""
    findings: list[Finding] = []
    for suite, cells in cells_by_suite(run).items():
        answers = ANSWERS.get(suite, ())
        for answer in (fastest, *answers, *(() if _quality in answers else (_quality,))):  # quality wherever it was scored
            text = answer(cells)
            if text:
                findings.append(Finding("answer", text, suite))
    failed = run.failed_cells
    if failed:
        shown = "; ".join(f"{c.suite} {c.label}: {_short(first_line(c.error) or 'failed')}" for c in failed[:3])
        more = f" (and {len(failed) - 3} more, listed under Failures)" if len(failed) > 3 else ""
        findings.append(Finding("failure", f"{len(failed)} of {len(run.cells)} cells failed: {shown}{more}"))
    for flag in run_flags(run):
        findings.append(Finding("warning", flag.message, flag.suite))
    noisy = [c for c in run.cells if c.ok and is_noisy(c)]
    if noisy:
        findings.append(Finding("warning", f"{len(noisy)} of {len(run.cells)} cells are noisy (the middle half of their repeats spans "
                                "more than 10% of the median): their digits are fewer, and more repeats on an idle machine would firm them up"))
    return findings
