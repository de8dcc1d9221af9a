"""`tasks`: txt2img, img2img and inpaint on one model (img2img runs strength x steps steps).

Families with fewer pipelines (PixArt and SANA are text-to-image only in diffusers) run the tasks
they have when the list is the default; a task the user names that the family lacks is refused.
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.suites.base import Cell, Suite, register
from diffprof.engine.model_facts import model_facts


def tasks_for(config: RunConfig) -> list[str]:
    have = model_facts(config.model).tasks
    if have is None:
        return list(config.tasks)
    if config.tasks == RunConfig.default_of("tasks"):
        return [t for t in config.tasks if t in have]
    missing = [t for t in config.tasks if t not in have]
    if missing:
        raise ConfigError(f"{config.model} has no {' or '.join(missing)} pipeline in diffusers", f"its family runs: {', '.join(have)}")
    return list(config.tasks)


@register
class TasksSuite(Suite):
    name = "tasks"
    axis = "task"
    description = "txt2img vs img2img vs inpaint (config.tasks)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"task": t}, task=t) for t in tasks_for(config)]
