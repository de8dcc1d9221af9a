"""`precision`: fp32 / fp16 / bf16, each eager and with torch.compile of the UNet.

fp16 cells on a CPU fail with the reason (no fast fp16 kernels there), as a user would want to
know rather than have them silently dropped.
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.switches import Optimizations, uncompiled
from diffprof.suites.base import Cell, Suite, register


@register
class PrecisionSuite(Suite):
    name = "precision"
    axis = "precision, compile"
    description = "fp32/fp16/bf16 with and without torch.compile (config.precisions)"

    def cells(self, config: RunConfig) -> list[Cell]:
        cells = []
        eager = uncompiled(config.optimize)
        # the compiled cells keep how the user compiles (compile=unet+vae, compile_mode, compile_regions)
        compiled = list(config.optimize) if Optimizations.parse(config.optimize).compile else [*config.optimize, "compile"]
        for p in config.precisions:
            for is_compiled in (False, True):
                cells.append(self.cell(config, {"precision": p, "compile": is_compiled}, precision=p, optimize=compiled if is_compiled else eager))
        return cells
