"""`ablation`: what each element of the `fast` preset contributes — none, fast, and fast minus each
element in turn (the difference to `fast` is that element's share; ``quality: auto`` scores each
cell's fidelity, so a lossy element such as fp8 shows its error beside its time). The elements are the
registry entries that say they belong to the model's `fast` (:func:`~diffprof.engine.switches.fast_switches`:
fp8 on a diffusion transformer, where the device runs it)."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.model_facts import model_facts
from diffprof.engine.switches import compiles, expand_fast, fast_switches, runs_on, uncompiled
from diffprof.suites.base import Cell, Suite, cuda_expected, register


@register
class AblationSuite(Suite):
    name = "ablation"
    axis = "variant"
    description = f"none, fast, and fast without each of its elements ({', '.join(s.name for s in fast_switches())}; fp8 too on transformers)"

    def cells(self, config: RunConfig) -> list[Cell]:
        import torch

        from diffprof.engine.precision import resolve_precision

        denoiser = model_facts(config.model).denoiser
        device = torch.device("cuda" if cuda_expected(config) else "cpu")
        runs = runs_on(device, resolve_precision(config.precision, device))
        fast = expand_fast(["fast"], denoiser, runs)
        others = [o for o in config.optimize if o != "fast" and o not in fast]
        cells = [self.cell(config, {"variant": "none"}, optimize=uncompiled(others)),
                 self.cell(config, {"variant": "fast"}, optimize=others + fast)]
        for switch in (s for s in fast_switches(denoiser) if s.fast in fast):
            # what the element implies stays (cuda_graph's fast_loop): the difference is the element alone
            kept = [e for e in fast if e != switch.fast] + list(switch.implies)
            extra = others if compiles(kept) else uncompiled(others)
            cells.append(self.cell(config, {"variant": f"fast - {switch.fast}"}, optimize=extra + kept))
        return cells
