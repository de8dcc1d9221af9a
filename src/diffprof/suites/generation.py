"""`generation`: one cell with the config exactly as given (the seed config's
``profile_diffusion_generation``): the baseline every other suite varies."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class GenerationSuite(Suite):
    name = "generation"
    axis = "config"
    description = "one cell: the configured generation, profiled per component"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"model": config.model})]
