"""`resolutions`: time and memory against pixel count (the report fits the power-law exponent)."""

from __future__ import annotations

from diffprof.config import RunConfig, parse_resolution
from diffprof.suites.base import Cell, Suite, register


def native_size(config: RunConfig) -> int:
    from diffprof.models.presets import PRESETS

    preset = PRESETS.get(config.model)
    return int(preset.native_size) if preset is not None else 512


@register
class ResolutionsSuite(Suite):
    name = "resolutions"
    axis = "width x height"
    description = "time and peak memory against pixel count (config.resolutions; default 0.5x, 1x, 1.5x native)"

    def cells(self, config: RunConfig) -> list[Cell]:
        if config.resolutions:
            sizes = [parse_resolution(r) for r in config.resolutions]
        else:
            n = native_size(config)
            sizes = [(s, s) for s in sorted({max(8, round(n * f / 8) * 8) for f in (0.5, 1.0, 1.5)})]
        return [self.cell(config, {"width": w, "height": h}, width=w, height=h) for w, h in sizes]
