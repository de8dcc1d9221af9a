"""`pipelines`: model variants (sd15, sd21, sdxl, inpainting models) at each one's native size."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class PipelinesSuite(Suite):
    name = "pipelines"
    axis = "model"
    description = "model variants at their native sizes (config.models; inpainting presets run --task inpaint)"

    def cells(self, config: RunConfig) -> list[Cell]:
        from diffprof.models.presets import PRESETS

        cells = []
        for m in config.models:
            preset = PRESETS.get(m)
            task = "inpaint" if preset is not None and preset.inpaint else config.task
            size = config.width if m == config.model else None
            cells.append(self.cell(config, {"model": m}, model=m, task=task, width=size, height=config.height if size else None))
        return cells
