"""What a tuned config must satisfy: a quality floor on one metric, a fidelity floor, optionally a memory cap.

"Within 2 points of the baseline" is the default floor: 0.02 of adherence (a fraction), 2 on the
0-100 CLIP score, 2 dB of PSNR. Each metric says which way is better (its direction in the
metric registry, :mod:`diffprof.metrics`), so a floor on latent error is a ceiling.

Adherence and CLIP score read what is drawn, not how cleanly: on shapes-sd DDIM at 10 steps reads
adherence 1.0 with visible speckle (issue 17). So tuning for them also holds **fidelity** by
default: mean PSNR against the converged reference solve at most :data:`FIDELITY_TOLERANCE_DB` below
the baseline's own (``--min-psnr DB`` sets the floor instead; 0 turns it off). Tuning for PSNR or
another convergence metric holds that metric itself and needs no second floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffprof.errors import ConfigError, unknown_choice
from diffprof.metrics import Direction, direction_of
from diffprof.units import fmt_bytes


@dataclass(frozen=True)
class TuneMetric:
    """A quality metric tune can hold to.

    Attributes:
        name: the cell metric (``adherence``, ``psnr_db``, ...).
        family: the ``RunConfig.quality`` entry that produces it.
        tolerance: the default loss allowed against the baseline ("2 points").
        slack: how far below the floor a screen on a subset of prompts may score and still be
            confirmed on all of them (a subset's mean is noisier than the full one).
    """

    name: str
    family: str
    tolerance: float
    slack: float

    @property
    def direction(self) -> Direction:
        return direction_of(self.name)


TUNE_METRICS: dict[str, TuneMetric] = {
    m.name: m
    for m in (
        TuneMetric("adherence", "adherence", 0.02, 0.05),
        TuneMetric("psnr_db", "convergence", 2.0, 1.5),
        TuneMetric("ssim", "convergence", 0.02, 0.03),
        TuneMetric("latent_rel_error", "convergence", 0.02, 0.03),
        TuneMetric("clip_score", "clip", 2.0, 1.5),
    )
}
#: The default fidelity floor, held beside a metric that does not see fidelity (adherence, CLIP): mean
#: PSNR against the converged reference solve at most this many dB below the baseline's. Measured by
#: benchmarks/tune_fidelity.py on shapes-sd (docs/benchmarks.md, "tune's fidelity floor"): its 50-step
#: DDIM baseline reads 36.3 dB against dpmpp_2m at 100 steps; DDIM at 20 steps 33.8 (2.5 below, looks
#: the same), at 15 31.3 and at 10 28.3 (5 and 8 below: speckle and wobbly edges), all at adherence 1.0.
FIDELITY_TOLERANCE_DB = 3.0
#: Family names accepted for ``--metric``, and the metric each stands for.
METRIC_ALIASES = {"convergence": "psnr_db", "clip": "clip_score", "psnr": "psnr_db"}


def resolve_metric(name: str, model: str) -> TuneMetric:
    """``auto`` (adherence on shapes-sd, PSNR otherwise), a family name or a metric name."""
    from diffprof.quality.scoring import SHAPES_MODEL

    if name == "auto":
        name = "adherence" if model == SHAPES_MODEL else "psnr_db"
    name = METRIC_ALIASES.get(name, name)
    if name not in TUNE_METRICS:
        raise unknown_choice("tune metric", name, ["auto", *METRIC_ALIASES, *TUNE_METRICS])
    return TUNE_METRICS[name]


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


#: The metric a fidelity floor is held on, and the slack a screen's subset of prompts gets on it.
FIDELITY_METRIC = "psnr_db"
FIDELITY_SLACK_DB = 1.5


@dataclass(frozen=True)
class FidelityRule:
    """How the fidelity floor is set: an absolute ``floor`` in dB, or ``tolerance`` dB below the
    baseline's PSNR (:func:`fidelity_rule`)."""

    floor: float | None = None
    tolerance: float | None = None

    def target(self, baseline_psnr: float) -> float:
        if self.floor is not None:
            return self.floor
        if not _finite(baseline_psnr):
            raise ConfigError(f"the baseline has no {FIDELITY_METRIC} score, so there is no default fidelity floor",
                              "pass --min-psnr DB, or --min-psnr 0 to hold no fidelity floor")
        return baseline_psnr - (self.tolerance or 0.0)

    def describe(self) -> str:
        return f"{self.floor:g} dB" if self.floor is not None else f"the baseline's less {self.tolerance:g} dB"


def fidelity_rule(metric: TuneMetric, min_psnr: float | None) -> FidelityRule | None:
    """The fidelity floor tuning for ``metric`` holds: ``min_psnr`` dB when given (0: none), else
    :data:`FIDELITY_TOLERANCE_DB` below the baseline unless ``metric`` is a convergence metric
    (which holds fidelity itself)."""
    if min_psnr is not None:
        if not math.isfinite(min_psnr) or min_psnr < 0:
            raise ConfigError(f"--min-psnr must be a number of dB >= 0, got {min_psnr}", "e.g. --min-psnr 35, or 0 to hold no fidelity floor")
        return FidelityRule(floor=float(min_psnr)) if min_psnr > 0 else None
    return None if metric.family == "convergence" else FidelityRule(tolerance=FIDELITY_TOLERANCE_DB)


@dataclass(frozen=True)
class Constraints:
    """The floor (``target``) on ``metric``, the fidelity floor (``fidelity``: mean PSNR in dB
    against the reference solve; None: none) and the cap on ``memory_metric`` (None: no cap)."""

    metric: TuneMetric
    target: float
    max_memory_bytes: float | None = None
    memory_metric: str = "host_peak_rss_bytes"
    fidelity: float | None = None

    def meets_fidelity(self, value: float | None, slack: float = 0.0) -> bool:
        """No floor: always; a floor and no score: not shown to hold, so no."""
        if self.fidelity is None:
            return True
        return _finite(value) and value >= self.fidelity - slack  # type: ignore[operator]

    def meets_quality(self, value: float | None, slack: float = 0.0) -> bool:
        if not _finite(value):
            return False
        if self.metric.direction == "higher":
            return value >= self.target - slack  # type: ignore[operator]
        return value <= self.target + slack  # type: ignore[operator]

    def meets_memory(self, value: float | None) -> bool:
        """No cap: always; a cap and no measurement: not shown to fit, so no."""
        if self.max_memory_bytes is None:
            return True
        return _finite(value) and value <= self.max_memory_bytes  # type: ignore[operator]

    def better(self, a: float, b: float) -> bool:
        """Whether quality ``a`` is strictly better than ``b``."""
        return a > b if self.metric.direction == "higher" else a < b

    def describe(self) -> str:
        """``adherence >= 0.94, host peak RSS <= 2 GiB``."""
        op = ">=" if self.metric.direction == "higher" else "<="
        text = f"{self.metric.name} {op} {self.target:.4g}"
        if self.fidelity is not None:
            text += f", {FIDELITY_METRIC} >= {self.fidelity:.4g} (against the reference solve)"
        if self.max_memory_bytes is not None:
            text += f", {self.memory_metric} <= {fmt_bytes(self.max_memory_bytes)}"
        return text


def default_target(metric: TuneMetric, baseline_quality: float, tolerance: float | None = None) -> float:
    """The baseline's quality less the tolerance (plus, for lower-is-better metrics)."""
    if not _finite(baseline_quality):
        raise ConfigError(
            f"the baseline has no {metric.name} score, so there is no default quality floor",
            "pass --min-quality",
        )
    tol = metric.tolerance if tolerance is None else tolerance
    if tol < 0:
        raise ConfigError(f"tolerance must be >= 0, got {tol}", "give the quality loss allowed, e.g. --tolerance 0.02 (adherence) or 2 (dB, CLIP)")
    return baseline_quality - tol if metric.direction == "higher" else baseline_quality + tol
