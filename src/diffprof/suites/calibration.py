"""`calibration`: the smallest sweep a cost model can be fitted on (``diffprof calibrate``).

Three sizes x two batches, so the fit sees how time and memory grow with pixels and with batch
separately; step time is per step, so few steps suffice (the config's ``steps``). Sizes are relative
to the model's native size: 0.5x, 1x and 1.5x native (tiny models: 32, 64, 96 px), or 0.25x-0.5x for a
full-size model on a CPU, where native size would take minutes per call. ``--resolutions`` and
``--batch-sizes`` replace the defaults.

An inpainting model (9-channel UNet) runs only inpainting, so its cells are inpaint calls at strength
1 (every step runs; the init image's VAE encodes are measured and fitted). Cells run smallest first (pixels x batch). On a CPU, peak memory is the process's resident set,
which rarely shrinks after a large call; in ascending order each cell's peak is its own.
"""

from __future__ import annotations

from diffprof.config import RunConfig, parse_resolution
from diffprof.suites.base import Cell, Suite, cuda_expected, register
from diffprof.engine.model_facts import model_facts

#: Sizes as fractions of the native size, and batches: on a GPU or for a tiny model ...
FACTORS, BATCHES = (0.5, 1.0, 1.5), (1, 4)
#: ... and for a full-size model on a CPU.
CPU_FACTORS, CPU_BATCHES = (0.25, 0.375, 0.5), (1, 2)


def _tiny(config: RunConfig) -> bool:
    from diffprof.models.presets import PRESETS

    preset = PRESETS.get(config.model)
    return bool(preset is not None and preset.builtin)


def plan(config: RunConfig) -> list[tuple[int, int, int]]:
    """(width, height, batch) of every calibration cell, smallest workload first."""
    small_device = not cuda_expected(config) and not _tiny(config)
    if config.resolutions:
        sizes = [parse_resolution(r) for r in config.resolutions]
    else:
        facts = model_facts(config.model)
        factors = CPU_FACTORS if small_device else FACTORS
        sizes = [(s, s) for s in sorted({facts.round_size(facts.native_size * f) for f in factors})]
    if config.batch_sizes != RunConfig.default_of("batch_sizes"):
        batches = sorted(set(config.batch_sizes))
    else:
        batches = list(CPU_BATCHES if small_device else BATCHES)
    points = [(w, h, b) for (w, h) in sizes for b in batches]
    return sorted(points, key=lambda p: (p[0] * p[1] * p[2], p[2]))


@register
class CalibrationSuite(Suite):
    name = "calibration"
    axis = "width x height, batch"
    description = "3 sizes x 2 batches around the native size: what `diffprof estimate` fits its cost model on"

    def cells(self, config: RunConfig) -> list[Cell]:
        task = {"task": "inpaint", "strength": 1.0} if model_facts(config.model).inpaint else {"task": "txt2img"}
        return [self.cell(config, {"width": w, "height": h, "batch": b}, width=w, height=h, batch=b, **task) for w, h, b in plan(config)]
