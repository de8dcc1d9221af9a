"""`tasks`: txt2img, img2img and inpaint on one model (img2img runs strength x steps steps)."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class TasksSuite(Suite):
    name = "tasks"
    axis = "task"
    description = "txt2img vs img2img vs inpaint (config.tasks)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"task": t}, task=t) for t in config.tasks]
