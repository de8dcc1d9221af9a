"""`ablation`: what each element of the `fast` preset contributes — none, fast, and fast minus each
element in turn (the difference to `fast` is that element's share). The elements are the registry
entries that say they belong to `fast` (:func:`~diffprof.engine.switches.fast_switches`)."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.switches import compiles, expand_fast, fast_switches, uncompiled
from diffprof.suites.base import Cell, Suite, register


@register
class AblationSuite(Suite):
    name = "ablation"
    axis = "variant"
    description = f"none, fast, and fast without each of its elements ({', '.join(s.name for s in fast_switches())})"

    def cells(self, config: RunConfig) -> list[Cell]:
        fast = expand_fast(["fast"])
        others = [o for o in config.optimize if o != "fast" and o not in fast]
        cells = [self.cell(config, {"variant": "none"}, optimize=uncompiled(others)),
                 self.cell(config, {"variant": "fast"}, optimize=others + fast)]
        for switch in fast_switches():
            # what the element implies stays (cuda_graph's fast_loop): the difference is the element alone
            kept = [e for e in fast if e != switch.fast] + list(switch.implies)
            extra = others if compiles(kept) else uncompiled(others)
            cells.append(self.cell(config, {"variant": f"fast - {switch.fast}"}, optimize=extra + kept))
        return cells
