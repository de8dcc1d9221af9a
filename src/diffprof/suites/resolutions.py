"""`resolutions`: time and memory against pixel count (the report fits the power-law exponent).

Default sizes are 0.5x, 1x and 1.5x the model's native size, rounded to the multiple its sides must
be (8 for SD; 16 for FLUX and SD3, whose transformers take 2x2 latents per token; 32 for SANA)."""

from __future__ import annotations

from diffprof.config import RunConfig, parse_resolution
from diffprof.suites.base import Cell, Suite, register
from diffprof.engine.model_facts import model_facts


def native_size(config: RunConfig) -> int:
    return model_facts(config.model).native_size


@register
class ResolutionsSuite(Suite):
    name = "resolutions"
    axis = "width x height"
    description = "time and peak memory against pixel count (config.resolutions; default 0.5x, 1x, 1.5x native)"

    def cells(self, config: RunConfig) -> list[Cell]:
        if config.resolutions:
            sizes = [parse_resolution(r) for r in config.resolutions]
        else:
            facts = model_facts(config.model)
            sizes = [(s, s) for s in sorted({facts.round_size(facts.native_size * f) for f in (0.5, 1.0, 1.5)})]
        return [self.cell(config, {"width": w, "height": h}, width=w, height=h) for w, h in sizes]
