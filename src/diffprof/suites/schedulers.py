"""`schedulers`: the same model and settings under each scheduler (swapped with from_config)."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class SchedulersSuite(Suite):
    name = "schedulers"
    axis = "scheduler"
    description = "time per scheduler at a fixed step count (config.schedulers)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"scheduler": s}, scheduler=s) for s in config.schedulers]
