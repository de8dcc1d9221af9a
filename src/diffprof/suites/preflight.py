"""Before a sweep measures anything: what this device cannot run, said once, up front.

A run used to find out cell by cell (a seed config with sequential offload on a CPU failed every
cell and said so only inside the results). The runner now checks, on the device its cells will run
on (the serial and local executors; a Ray cluster's cells are checked where they run):

1. Run-wide placement switches on a CPU. ``sequential_cpu_offload`` and ``model_cpu_offload`` keep
   the weights in host memory and stream them to a GPU; on a CPU the weights already live in host
   memory, so such a switch given for the whole run (``-O``, the seed's
   ``enable_sequential_cpu_offload``) is left out of every cell, said once before measuring and
   noted on each cell (``results.DEVICE_NOTE``), instead of failing them all. A memory-suite cell
   that is *about* an offload keeps it and is refused by 2.
2. Each cell's switches and precision (``Optimizations.validate``): a cell that cannot run here is
   stored ``failed`` with the reason, unmeasured, and the others run.
3. Each cell's peak memory (:mod:`diffprof.estimate.memory_check`): a cell predicted not to fit is
   failed up front with the numbers (``force`` runs it anyway).

And before all three: a model that needs the Hub while ``HF_HUB_OFFLINE`` is set and the local cache
lacks it (the pipelines suite's sd15/sd21/sdxl with weights ``auto``) fails up front too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from diffprof.config import RunConfig
from diffprof.engine.switches import REGISTRY, Optimizations
from diffprof.errors import ConfigError, ResourceError
from diffprof.results import DEVICE_NOTE, MEMORY_NOTE, CellResult
from diffprof.suites.base import Cell

#: Executors whose cells run on this host's devices (what the checks can look at).
HERE = ("serial", "local")


@dataclass
class Preflight:
    """The run as this device will measure it: its adapted config, and the cells refused up front."""

    config: RunConfig
    device: Any = None
    #: Run-wide switches left out on this device (step 1), with why.
    left_out: list[str] = field(default_factory=list)
    reason_left_out: str = ""

    @classmethod
    def for_config(cls, config: RunConfig) -> Preflight:
        """Resolve the device the cells run on (when they run here) and adapt the run-wide switches."""
        if config.executor not in HERE:
            return cls(config)
        from diffprof.engine.devices import resolve_engine_device

        device = resolve_engine_device(config.device)
        if device.type == "cuda":
            return cls(config, device)
        placing = [t for t in config.optimize if (s := REGISTRY.get(t)) is not None and s.places and "CUDA" in s.needs]
        if not placing:
            return cls(config, device)
        kept = [t for t in config.optimize if t not in placing]
        why = f"{'it streams' if len(placing) == 1 else 'they stream'} weights from host memory to a GPU, and on a CPU they already live there"
        return cls(replace(config, optimize=kept), device, placing, why)

    @property
    def note(self) -> str | None:
        """What every measured cell of this run carries when switches were left out."""
        return f"{' and '.join(self.left_out)} left out on the {self.device.type}: {self.reason_left_out}" if self.left_out else None

    def refusals(self, cells: Sequence[Cell], *, memory: bool = True) -> dict[str, str]:
        """``{cell key: reason}`` of the cells that cannot run on this device (steps 2 and 3; the
        memory check traces each model, a second or so, and is left out with ``memory=False``)."""
        if self.device is None:
            return {}
        from diffprof.engine.precision import resolve_precision
        from diffprof.estimate.memory_check import check_fits

        from diffprof.models.resolve import offline_miss

        refused: dict[str, str] = {}
        offline = {m: offline_miss(*m) for m in {(c.config.model, c.config.weights) for c in cells}}
        for cell in cells:
            c = cell.config
            miss = offline[(c.model, c.weights)]
            if miss:
                refused[cell.key] = f"{miss} (use --weights synthetic for its architecture with random weights, or run once with network access)"
                continue
            try:
                Optimizations.parse(c.optimize).validate(self.device, resolve_precision(c.precision, self.device))
                if memory:
                    check_fits(c, self.device)
            except (ConfigError, ResourceError) as exc:
                refused[cell.key] = str(exc)
        return refused

    def message(self, cells: Sequence[Cell], refused: dict[str, str]) -> str | None:
        """One message, before anything is measured: what was left out, and which cells cannot run."""
        lines: list[str] = []
        where = self.device.type if self.device is not None else "this device"
        if self.left_out:
            lines.append(f"{self.note}: every cell runs without {'it' if len(self.left_out) == 1 else 'them'} (noted on each cell)")
        if refused:
            by_reason: dict[str, list[str]] = defaultdict(list)
            for cell in cells:
                if cell.key in refused:
                    by_reason[refused[cell.key]].append(cell.label)
            lines.append(f"on {where}, {len(refused)} of {len(cells)} cells cannot run and are stored as failed without measuring "
                         f"(the other {len(cells) - len(refused)} run):")
            for reason, labels in by_reason.items():
                shown = ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4 else "")
                lines.append(f"  {shown}: {reason}")
        return "\n".join(lines) or None

    def annotate(self, cell: Cell, result: CellResult) -> CellResult:
        """A measured cell, with the notes its numbers need: what this run left out, and a memory
        cell measured on a CPU in a process that ran other cells (its host RSS is their high-water
        mark too, so it only grows in cell order and does not rank the options)."""
        if not result.ok:
            return result
        if self.note:
            result.settings.setdefault(DEVICE_NOTE, self.note)
        if cell.suite == "memory" and self.device is not None and self.device.type == "cpu" and not cell.config.isolate:
            result.settings.setdefault(MEMORY_NOTE, SHARED_RSS_NOTE)
        return result


#: The note on a memory cell measured on a CPU without isolation.
SHARED_RSS_NOTE = ("host RSS of a process that ran earlier cells: a high-water mark that only grows in cell order, so it does not "
                   "rank the options; run with --isolate (the default on a CPU) for each option's own peak")
