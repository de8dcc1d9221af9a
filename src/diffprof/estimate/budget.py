""""Will it fit?": the fastest optimization set whose predicted peak stays inside a memory budget.

Candidates are every combination of the memory switches (attention slicing, VAE slicing, VAE tiling,
and on CUDA model or sequential CPU offload) on top of the user's other switches. Each is predicted
from its own calibration when the store has one (measured) or derived from the base calibration by
the rules in :mod:`diffprof.estimate.model` (modelled); the answer says which.

An option *fits* when the upper end of its peak's prediction interval, plus ``headroom`` (room the
budget must leave, e.g. the CUDA context that PyTorch's allocator does not count), is within the
budget: "it fits" should hold for the run the user is about to start, not only on average. The
cheapest is the one with the smallest predicted call time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from diffprof.engine.switches import Optimizations, label_switches
from diffprof.errors import ConfigError
from diffprof.estimate.result import Estimate
from diffprof.estimate.workload import Workload
from diffprof.units import fmt_bytes, fmt_seconds


def candidates(base: Optimizations, device: str, precision: str) -> list[Optimizations]:
    """Every valid memory-switch combination on top of ``base`` (its other switches kept)."""
    attentions = [base.attention] if base.attention == "slicing" else [base.attention, "slicing"]
    offloads = ["none", "model", "sequential"] if device == "cuda" else ["none"]
    out: list[Optimizations] = []
    for attention, slicing, tiling, offload in itertools.product(attentions, (False, True), (False, True), offloads):
        opts = replace(base, attention=attention, vae_slicing=slicing, vae_tiling=tiling, offload=offload)  # type: ignore[arg-type]
        try:
            opts.validate(torch.device(device), precision)
        except ConfigError:
            continue  # e.g. compile with sequential offload
        if opts not in out:
            out.append(opts)
    return out


@dataclass(frozen=True)
class BudgetOption:
    """One candidate's prediction against the budget."""

    estimate: Estimate
    fits: bool
    needed_bytes: float

    @property
    def optimizations(self) -> str:
        return self.estimate.optimizations


@dataclass
class BudgetAnswer:
    """The answer to "which optimizations make this workload fit in ``max_bytes``, and how fast is it?"."""

    max_bytes: float
    headroom_bytes: float
    workload: Workload
    options: list[BudgetOption]

    @property
    def fitting(self) -> list[BudgetOption]:
        """Options that fit, fastest first; on a tie (derived times can be equal), fewer switches first."""
        return sorted((o for o in self.options if o.fits), key=speed_key)

    @property
    def best(self) -> BudgetOption | None:
        """The fastest option that fits, or None."""
        fitting = self.fitting
        return fitting[0] if fitting else None

    @property
    def closest(self) -> BudgetOption:
        """The option needing the least memory (what to try when nothing fits)."""
        return min(self.options, key=lambda o: o.needed_bytes)

    @property
    def fits(self) -> bool:
        return self.best is not None

    @property
    def message(self) -> str:
        best = self.best
        budget = fmt_bytes(self.max_bytes)
        if best is not None:
            e = best.estimate
            return (f"fits in {budget} with {best.optimizations}: peak {fmt_bytes(e.peak_bytes)} "
                    f"(up to {fmt_bytes(e.peak_interval.high)}), {fmt_seconds(e.call_s)} per call")
        c = self.closest
        e = c.estimate
        short = c.needed_bytes - self.max_bytes
        central = " (its central estimate would fit, but not with 95% confidence)" if e.peak_bytes + self.headroom_bytes <= self.max_bytes else ""
        return (f"nothing fits in {budget}: the closest is {c.optimizations}, which needs {fmt_bytes(c.needed_bytes)} "
                f"(peak {fmt_bytes(e.peak_bytes)}, up to {fmt_bytes(e.peak_interval.high)}"
                + (f", plus {fmt_bytes(self.headroom_bytes)} headroom" if self.headroom_bytes else "")
                + f"){central}; {fmt_bytes(short)} more memory, or a smaller size or batch, would make it fit")

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "max_bytes": self.max_bytes,
            "headroom_bytes": self.headroom_bytes,
            "fits": self.fits,
            "best": best.optimizations if best else None,
            "closest": self.closest.optimizations,
            "message": self.message,
            "options": [
                {"optimizations": o.optimizations, "fits": o.fits, "needed_bytes": o.needed_bytes, "estimate": o.estimate.to_dict()}
                for o in sorted(self.options, key=speed_key)
            ],
        }


def speed_key(option: BudgetOption) -> tuple[float, int]:
    """Fastest first; between equals, the fewer switches."""
    return option.estimate.call_s, len(label_switches(option.optimizations))


def fit_budget(
    predict: Callable[[Optimizations], Estimate],
    options: list[Optimizations],
    max_bytes: float,
    workload: Workload,
    headroom_bytes: float = 0.0,
) -> BudgetAnswer:
    """Predict every option with ``predict`` and judge it against ``max_bytes``."""
    if max_bytes <= 0:
        raise ConfigError(f"the memory budget must be positive, got {max_bytes}", "e.g. --max-memory 24 (GB)")
    judged = []
    for opts in options:
        estimate = predict(opts)
        needed = estimate.peak_interval.high + headroom_bytes
        judged.append(BudgetOption(estimate, needed <= max_bytes, needed))
    return BudgetAnswer(max_bytes, headroom_bytes, workload, judged)
