"""`memory`: each memory optimization (and named combinations) against none: peak memory and time.

On a CPU-only machine the default list leaves out the offload modes (they need CUDA), and on a
diffusion transformer the switches that reach only a UNet's attention (attention slicing); a list
the user names is run as given, and impossible cells fail with the reason. The user's
own switches (``-O fast``) go into every cell, less what the cell's own switches exclude
(:func:`~diffprof.engine.switches.yield_to` says what and why), and the label says what was
dropped.

On a CPU the memory figure is the process's peak resident set, a high-water mark: in one process it
only grows from cell to cell (567, 573, 589, 605 MiB for four options) and ranks nothing. So on a
CPU each cell runs in its own process unless ``isolate`` says otherwise; a cell measured without
isolation carries a note saying its figure does not rank the options (``results.MEMORY_NOTE``).
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.engine.switches import REGISTRY, Optimizations, label_switches, yield_to
from diffprof.suites.base import Cell, Suite, cuda_expected, register
from diffprof.engine.model_facts import model_facts

#: Switches that need a CUDA device (the offloads, xformers, ...), from their registry entries.
CUDA_ONLY = tuple(s.name for s in REGISTRY if "CUDA" in s.needs)


@register
class MemorySuite(Suite):
    name = "memory"
    axis = "optimization"
    description = "peak memory and time per memory optimization (config.memory_optimizations; join with + to combine)"

    def cells(self, config: RunConfig) -> list[Cell]:
        options = list(config.memory_optimizations)
        cuda = cuda_expected(config)
        if options == RunConfig.default_of("memory_optimizations"):
            if not cuda:
                options = [o for o in options if not any(s in CUDA_ONLY for s in label_switches(o))]
            denoiser = model_facts(config.model).denoiser
            if denoiser is not None:
                options = [o for o in options if all(denoiser in REGISTRY.by_name[s.partition("=")[0]].denoisers for s in label_switches(o))]
        # on a CPU the peak is the process's resident set, a high-water mark: each cell its own process
        isolate = config.isolate if config.isolate is not None else not cuda
        cells = []
        for option in options:
            switches = label_switches(option)
            base = [o for o in config.optimize if o not in switches]
            base, dropped = yield_to(base, Optimizations.parse(switches))
            short = dict.fromkeys(d.partition("=")[0] for d in dropped)  # compile=unet+vae -> compile
            label = f"{option} (no {', '.join(short)})" if dropped else option
            cells.append(self.cell(config, {"optimization": label}, optimize=base + switches, isolate=isolate))
        return cells
