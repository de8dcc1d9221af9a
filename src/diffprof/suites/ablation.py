"""`ablation`: what each element of the `fast` preset contributes — none, fast, and fast minus each
element in turn (the difference to `fast` is that element's share)."""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.optimizations import FAST_PRESET, uncompiled
from diffprof.suites.base import Cell, Suite, register


@register
class AblationSuite(Suite):
    name = "ablation"
    axis = "variant"
    description = "none, fast, and fast without each of its elements (fuse_qkv, channels_last, compile, cuda_graph, vae_bf16)"

    def cells(self, config: RunConfig) -> list[Cell]:
        others = [o for o in config.optimize if o != "fast" and o not in FAST_PRESET]
        cells = [self.cell(config, {"variant": "none"}, optimize=uncompiled(others)),
                 self.cell(config, {"variant": "fast"}, optimize=others + list(FAST_PRESET))]
        for element in FAST_PRESET:
            kept = [e for e in FAST_PRESET if e != element]
            if element == "cuda_graph":
                kept.append("fast_loop")  # keep diffprof's loop: the difference is the graph alone
            extra = others if any(k.startswith("compile") for k in kept) else uncompiled(others)
            cells.append(self.cell(config, {"variant": f"fast - {element}"}, optimize=extra + kept))
        return cells
