"""`precision`: fp32 / fp16 / bf16, each eager and with torch.compile of the UNet.

fp16 cells on a CPU fail with the reason (no fast fp16 kernels there), as a user would want to
know rather than have them silently dropped.
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.suites.base import Cell, Suite, register


@register
class PrecisionSuite(Suite):
    name = "precision"
    axis = "precision, compile"
    description = "fp32/fp16/bf16 with and without torch.compile (config.precisions)"

    def cells(self, config: RunConfig) -> list[Cell]:
        cells = []
        base = [o for o in config.optimize if not o.startswith("compile")]
        for p in config.precisions:
            for compiled in (False, True):
                optimize = base + (["compile"] if compiled else [])
                cells.append(self.cell(config, {"precision": p, "compile": compiled}, precision=p, optimize=optimize))
        return cells
