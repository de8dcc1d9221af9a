"""`guidance`: guidance scale sweep; scale <= 1 drops the unconditional half of the UNet batch."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class GuidanceSuite(Suite):
    name = "guidance"
    axis = "guidance"
    description = "time (and quality) against classifier-free guidance scale (config.guidance_scales)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"guidance": float(g)}, guidance=float(g)) for g in config.guidance_scales]
