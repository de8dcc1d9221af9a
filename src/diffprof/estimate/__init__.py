"""Resource planning: predict time and peak memory of a workload before running it (issue #6).

``diffprof calibrate`` measures a handful of points (the ``calibration`` suite) into the store;
:class:`Estimator` fits a cost model on them and predicts any size, batch, step count and memory
optimization, with prediction intervals, saying what is measured and what is modelled.

    from diffprof.estimate import Estimator
    est = Estimator.from_store(store, model="tiny-sd", device="cpu")
    est.predict(width=96, height=96, steps=20, batch=2)       # -> Estimate
    est.fit_budget(2 * 2**30, width=96, height=96, steps=20)  # -> BudgetAnswer
"""

from diffprof.estimate.budget import BudgetAnswer, BudgetOption
from diffprof.estimate.calibration import Calibration, CalibrationKey, CalibrationPoint
from diffprof.estimate.estimator import Estimator
from diffprof.estimate.model import CostModel
from diffprof.estimate.regression import LinearFit, fit_relative
from diffprof.estimate.result import Basis, Component, Estimate, Interval, MemoryPart
from diffprof.estimate.workload import Workload

__all__ = [
    "Basis",
    "BudgetAnswer",
    "BudgetOption",
    "Calibration",
    "CalibrationKey",
    "CalibrationPoint",
    "Component",
    "CostModel",
    "Estimate",
    "Estimator",
    "Interval",
    "LinearFit",
    "MemoryPart",
    "Workload",
    "fit_relative",
]
