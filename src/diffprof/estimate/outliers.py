"""Calibration cells the other cells disagree with: a leave-one-out check of the fit.

A busy minute can land on one calibration cell (issue 17: 64x64 at 237 ms beside 96x96 at 62 ms).
A least-squares fit bends towards such a point, so its own residual looks modest while the
extrapolations go wrong (384x384 predicted at 0.23 s against 0.99 s measured), and every fit that
includes it misfits the others too, so their residuals say little either. So each cell is predicted
by the fit of the *other* cells (leave one out; sets of fewer than :data:`CHOOSE` cells keep the
overlap exponents of the fit of the cells kept): its residual is the log of measured over predicted
call time, and the others' own residuals under that fit say how well the model describes them. A
cell is an outlier when it lies more than :data:`K` times further from the others' fit than they do
(their RMS log residual, at least :data:`SPREAD_FLOOR`), at least :data:`FLOOR` (25%: the
leave-one-out error of a quiet 6-cell calibration reaches ~18%), and outside the 95% prediction
interval of the others' fit (a cell at the edge of the plan is an extrapolation of the others). The worst outlier is set aside and
the rest are checked again without it, up to a third of the cells; set-aside cells are judged
against the fit of the cells kept.

``diffprof calibrate`` re-measures the outliers in fresh rounds and keeps the measurement that
agrees (:meth:`OutlierCheck.judge`), see :mod:`diffprof.suites.recalibrate`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

from diffprof.estimate.calibration import Calibration, CalibrationPoint
from diffprof.estimate.model import CostModel, can_fit

#: How many times the others' own spread a cell's residual may be before it is an outlier.
K = 3.0
#: ... and the least disagreement that counts (log of 1.25: 25%).
FLOOR = math.log1p(0.25)
#: The smallest spread the others' fit is credited with (3%: the noise of a median of a few calls).
SPREAD_FLOOR = 0.03
#: Leave-one-out sets of this many cells or more choose their own overlap exponents; smaller ones
#: keep those of the fit of every cell kept (4 cells cannot tell overhead from a spike at the edge).
CHOOSE = 5


@dataclass(frozen=True)
class Residual:
    """One cell's call time against the fit of the others.

    Attributes:
        label: ``64x64 b1``.
        cell_id: the stored cell.
        measured_s: its median call time.
        predicted_s: the call time the other cells' fit predicts for its workload.
        outlier: beyond the check's limit.
    """

    label: str
    cell_id: int | None
    measured_s: float
    predicted_s: float
    outlier: bool = False

    @property
    def log_residual(self) -> float:
        return math.log(self.measured_s / self.predicted_s) if self.measured_s > 0 and self.predicted_s > 0 else math.inf

    @property
    def ratio(self) -> float:
        """Measured over predicted (2.0: twice as slow as the other cells say)."""
        return math.exp(self.log_residual) if math.isfinite(self.log_residual) else math.inf

    def describe(self) -> str:
        from diffprof.units import fmt_seconds

        return f"{self.label}: {fmt_seconds(self.measured_s)} per call, {self.ratio:.2f}x the {fmt_seconds(self.predicted_s)} the other cells predict"


@dataclass(frozen=True)
class OutlierCheck:
    """The residual of every cell of a calibration, and the limit each was judged at.

    ``kept`` are the indices (into the calibration's points) of the cells the final fit rests on
    (every cell not flagged); ``limits`` the largest log residual each cell could have had.
    """

    calibration: Calibration
    residuals: tuple[Residual, ...]
    limits: tuple[float, ...]
    kept: tuple[int, ...]
    architecture: Any = None
    structure: CostModel | None = None

    @property
    def outliers(self) -> list[Residual]:
        return [r for r in self.residuals if r.outlier]

    def judge(self, point: CalibrationPoint) -> Residual:
        """``point`` (a re-measurement of one of the calibration's workloads) against the fit of the
        kept cells other than that workload's own; ``outlier`` says it still disagrees."""
        others = [p for i, p in enumerate(self.calibration.points) if i in self.kept and p.workload != point.workload]
        residual, limit = _against(self.calibration, others, point, self.architecture, structure=self.structure)
        return replace(residual, outlier=abs(residual.log_residual) > limit)


def _log_error(model: CostModel, point: CalibrationPoint) -> float:
    predicted = model.predict(point.workload).call_s
    return math.log(point.call_s / predicted) if point.call_s > 0 and predicted > 0 else math.inf


def _against(calibration: Calibration, others: list[CalibrationPoint], point: CalibrationPoint, architecture: Any,
             k: float = K, floor: float = FLOOR, structure: CostModel | None = None) -> tuple[Residual, float]:
    """``point`` predicted by the fit of ``others`` (with ``structure``'s overlap exponents), and the
    limit its log residual is held to."""
    model = CostModel.fit(replace(calibration, points=others, failed=[]), architecture, overlaps=structure)
    spread = math.sqrt(statistics.fmean(_log_error(model, p) ** 2 for p in others))
    e = model.predict(point.workload)
    residual = Residual(point.label, point.cell_id, point.call_s, e.call_s)
    # a cell at the edge of the plan is an extrapolation of the others' fit: its prediction interval says how far it may be
    reach = math.log(e.call_interval.high / e.call_s) if e.call_s > 0 and e.call_interval.high > e.call_s else 0.0
    return residual, max(k * max(spread, SPREAD_FLOOR), floor, reach)


def _loads(points: list[CalibrationPoint]) -> list[int]:
    return [p.workload.pixels * p.workload.batch for p in points]


def check_outliers(calibration: Calibration, architecture: Any = None, k: float = K, floor: float = FLOOR) -> OutlierCheck:
    """Every cell of ``calibration`` against the fit of the others (see the module docstring).

    With too few cells to fit without one (a leave-one-out set below the fit's minimum, or of one
    size), nothing is judged: every residual is against the fit of all cells, none flagged.
    """
    points = list(calibration.points)
    n = len(points)
    if architecture is None:
        from diffprof.estimate.architecture import Architecture

        architecture = Architecture.for_model(calibration.key.model)

    def fits_without(kept: list[int], i: int) -> bool:
        return can_fit(_loads([points[j] for j in kept if j != i]))

    if n < 4 or not all(fits_without(list(range(n)), i) for i in range(n)):
        model = CostModel.fit(replace(calibration, failed=[]), architecture)
        everything = [Residual(p.label, p.cell_id, p.call_s, model.predict(p.workload).call_s) for p in points]
        return OutlierCheck(calibration, tuple(everything), (math.inf,) * n, tuple(range(n)), architecture)
    aside: list[int] = []
    while True:
        kept = [i for i in range(n) if i not in aside]
        # with a cell left out, five cells still choose each part's overlap; four take the kept cells' choice
        structure = CostModel.fit(replace(calibration, points=[points[j] for j in kept], failed=[]), architecture) if len(kept) <= CHOOSE else None
        judged = {i: _against(calibration, [points[j] for j in kept if j != i], points[i], architecture, k, floor, structure) for i in kept}
        worst = max(kept, key=lambda i: abs(judged[i][0].log_residual) / judged[i][1])
        residual, limit = judged[worst]
        if abs(residual.log_residual) <= limit or len(aside) + 1 > n // 3 or not all(fits_without(kept, i) for i in kept if i != worst):
            break
        aside.append(worst)
    out: list[tuple[Residual, float]] = []
    for i, p in enumerate(points):
        out.append(_against(calibration, [points[j] for j in kept], p, architecture, k, floor, structure) if i in aside else judged[i])
    residuals = tuple(replace(r, outlier=abs(r.log_residual) > limit) for r, limit in out)
    return OutlierCheck(calibration, residuals, tuple(limit for _, limit in out), tuple(i for i, r in enumerate(residuals) if not r.outlier),
                        architecture, structure)
