"""`steps`: time against step count (fixed scheduler): separates per-step from per-call cost."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class StepsSuite(Suite):
    name = "steps"
    axis = "steps"
    description = "time against the number of denoising steps (config.step_counts)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"steps": n}, steps=n) for n in config.step_counts]
