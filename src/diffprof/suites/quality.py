"""`quality`: every scheduler at every step count, each cell scored for quality beside its time.

The grid (config.schedulers x config.step_counts) is what the speed/quality trade-off is made
of: the report draws its Pareto front and an image grid, and ``diffprof tune`` searches the same
space. Quality follows ``config.quality`` (``auto``: adherence on shapes-sd, convergence otherwise).
Schedulers are the model's kind, as in the schedulers suite (:func:`~diffprof.suites.schedulers.schedulers_for`).
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register
from diffprof.suites.schedulers import schedulers_for


@register
class QualitySuite(Suite):
    name = "quality"
    axis = "scheduler x steps"
    description = "time and quality for each scheduler at each step count (config.schedulers x config.step_counts)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [
            self.cell(config, {"scheduler": s, "steps": n}, scheduler=s, steps=n)
            for s in schedulers_for(config)
            for n in config.step_counts
        ]
