"""`batch`: images per call; the report marks the knee where throughput stops growing."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class BatchSuite(Suite):
    name = "batch"
    axis = "batch"
    description = "images/s against batch size (config.batch_sizes)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"batch": n}, batch=n) for n in config.batch_sizes]
