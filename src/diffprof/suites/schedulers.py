"""`schedulers`: the same model and settings under each scheduler (swapped with from_config).

A model takes only schedulers of its own kind (noise-schedule solvers for SD, SDXL and PixArt;
flow-matching ones for SD3, FLUX, SANA and other rectified-flow models). With the default list, a
flow-matching model gets the flow solvers its pipeline can run instead (``FLOW_DEFAULTS``; FLUX, which
sets its own sigmas, drops the ones that take none); a list the user names is checked whole before
anything runs, and a scheduler that does not apply is refused with the reason and the ones that do.
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.schedulers import FLOW_DEFAULTS, applicable, check_applies
from diffprof.suites.base import Cell, Suite, register
from diffprof.engine.model_facts import model_facts


def schedulers_for(config: RunConfig) -> list[str]:
    """The schedulers the suite sweeps on ``config.model`` (see the module docstring)."""
    kind = model_facts(config.model).kind
    names = list(config.schedulers)
    if kind is None:
        return names  # not known before loading (a Hub id): the engine refuses per cell
    if names == RunConfig.default_of("schedulers") and kind.flow:
        fits = applicable(kind, config.task)
        return [n for n in FLOW_DEFAULTS if n in fits]
    for name in names:
        check_applies(name, kind, config.model, config.task)
    return names


@register
class SchedulersSuite(Suite):
    name = "schedulers"
    axis = "scheduler"
    description = "time per scheduler at a fixed step count (config.schedulers)"

    def cells(self, config: RunConfig) -> list[Cell]:
        return [self.cell(config, {"scheduler": s}, scheduler=s) for s in schedulers_for(config)]
