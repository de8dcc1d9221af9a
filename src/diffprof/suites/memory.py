"""`memory`: each memory optimization (and named combinations) against none: peak memory and time,
and what each costs in quality against the plain pipeline (``quality: auto`` scores fidelity here:
the timed call's latents and image against the same call without the cell's switches).

On a diffusion transformer the default list adds the switches for big models
(:data:`TRANSFORMER_OPTIONS`: group offload at block and leaf level, T5 offloaded or dropped, int8
weights, float8 storage, fp8 matmuls). The default list keeps only what this model and device run:
no offload on a CPU (they need CUDA), no UNet-only attention slicing on a transformer, no T5 switch
on a family without one (drop_t5 is SD3's), no torchao switch without torchao, no fp8 below compute
capability 8.9. A list the user names is run as given, and impossible cells fail with the reason. The user's
own switches (``-O fast``) go into every cell, less what the cell's own switches exclude
(:func:`~diffprof.engine.switches.yield_to` says what and why), and the label says what was
dropped.

On a CPU the memory figure is the process's peak resident set, a high-water mark: in one process it
only grows from cell to cell (567, 573, 589, 605 MiB for four options) and ranks nothing. So on a
CPU each cell runs in its own process unless ``isolate`` says otherwise; a cell measured without
isolation carries a note saying its figure does not rank the options (``results.MEMORY_NOTE``).
"""

from __future__ import annotations

from typing import Any

from diffprof.config import RunConfig
from diffprof.engine.model_facts import ModelFacts, model_facts
from diffprof.engine.switches import Optimizations, label_switches, yield_to
from diffprof.errors import ConfigError
from diffprof.suites.base import Cell, Suite, cuda_expected, register

#: What the default list adds on a diffusion transformer (those the model and device run).
TRANSFORMER_OPTIONS = ("group_offload", "group_offload=leaf", "t5_offload", "drop_t5", "layerwise_casting", "int8_weights", "fp8")


def runs_here(option: str, facts: ModelFacts, device: Any, precision: str) -> bool:
    """Whether a memory option (``vae_slicing+vae_tiling``) runs on this model and device."""
    try:
        opts = Optimizations.parse(label_switches(option))
        opts.check_model(facts.denoiser, facts.family)
        opts.validate(device, precision)
    except ConfigError:
        return False
    return True


@register
class MemorySuite(Suite):
    name = "memory"
    axis = "optimization"
    description = "peak memory and time per memory optimization (config.memory_optimizations; join with + to combine)"

    def cells(self, config: RunConfig) -> list[Cell]:
        import torch

        from diffprof.engine.precision import resolve_precision

        options = list(config.memory_optimizations)
        cuda = cuda_expected(config)
        facts = model_facts(config.model)
        if options == RunConfig.default_of("memory_optimizations"):
            if facts.denoiser == "transformer":
                options += TRANSFORMER_OPTIONS
            device = torch.device("cuda" if cuda else "cpu")
            options = [o for o in options if runs_here(o, facts, device, resolve_precision(config.precision, device))]
        # on a CPU the peak is the process's resident set, a high-water mark: each cell its own process
        isolate = config.isolate if config.isolate is not None else not cuda
        cells = []
        for option in options:
            switches = label_switches(option)
            base = [o for o in config.optimize if o not in switches]
            base, dropped = yield_to(base, Optimizations.parse(switches), facts.denoiser)
            short = dict.fromkeys(d.partition("=")[0] for d in dropped)  # compile=unet+vae -> compile
            label = f"{option} (no {', '.join(short)})" if dropped else option
            cells.append(self.cell(config, {"optimization": label}, optimize=base + switches, isolate=isolate))
        return cells
