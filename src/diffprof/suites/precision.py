"""`precision`: fp32 / fp16 / bf16, each eager and with torch.compile of the UNet.

``auto`` and ``half`` resolve per device, as ``--precision`` does (the default list, fp32, half,
bf16, is fp32/fp16/bf16 on CUDA and fp32/bf16 on a CPU); a precision that resolves to one already
listed is measured once. An fp16 the user names on a CPU fails up front with the reason (no fast
fp16 kernels there), as a user would want to know rather than have it silently dropped.
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.precision import DEVICE_PRECISIONS
from diffprof.engine.switches import Optimizations, uncompiled
from diffprof.suites.base import Cell, Suite, cuda_expected, register


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
        for p in resolved_precisions(config):
            for is_compiled in (False, True):
                cells.append(self.cell(config, {"precision": p, "compile": is_compiled}, precision=p, optimize=compiled if is_compiled else eager))
        return cells


def resolved_precisions(config: RunConfig) -> list[str]:
    """``config.precisions`` with ``auto``/``half`` resolved for the run's device, each once."""
    names = list(config.precisions)
    if any(p in DEVICE_PRECISIONS for p in names):
        cuda = cuda_expected(config)
        names = [DEVICE_PRECISIONS[p][0 if cuda else 1] if p in DEVICE_PRECISIONS else p for p in names]
    return list(dict.fromkeys(names))
