"""What ``diffprof tune`` searches: scheduler x steps x precision x optimizations, and the baseline.

The baseline is the default diffusers setup a user starts from: the model's own scheduler at 50
steps, fp32 on a CPU and fp16 on CUDA, no optimizations. Speedups are quoted against it, and against
diffprof's own default (:attr:`SearchSpace.diffprof_default`: the same at ``RunConfig``'s 20 steps),
which is what a diffprof user already runs.

The default axes follow the model (:meth:`SearchSpace.for_model`): a flow-matching model (SD3, FLUX,
SANA) searches flow-matching schedulers, and a diffusion transformer leaves out the switches that
reach only a UNet (fused QKV today); axes a user names are checked against the model instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from diffprof.engine.precision import resolve_precision
from diffprof.engine.switches import Optimizations, label_switches
from diffprof.engine.schedulers import DEFAULT, SCHEDULERS, SchedulerKind, applicable, check_applies, check_scheduler
from diffprof.errors import ConfigError

#: One UNet call per step each, so steps are a fair proxy for cost when pruning (see :func:`unet_calls`).
DEFAULT_SCHEDULERS: tuple[str, ...] = ("dpmpp_2m", "unipc", "euler", "ddim", "pndm", "dpmpp_2m_karras", "deis")
#: The same for flow-matching models (those their pipeline cannot run are left out: FLUX sets its own sigmas).
DEFAULT_FLOW_SCHEDULERS: tuple[str, ...] = ("flow_dpmpp_2m", "flow_unipc", "flow_euler", "flow_deis", "flow_euler_karras")
DEFAULT_STEPS: tuple[int, ...] = (6, 8, 10, 12, 15, 20, 25, 30, 50)
#: Optimization sets per device type; ``+`` joins switches. compile's first call is paid in warm-up.
DEFAULT_OPTIMIZATIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("none", "channels_last"),
    "cuda": ("none", "channels_last+fuse_qkv", "fast"),
}
#: Precisions worth trying per device type (fp16 has no fast CPU kernels; fp32 on CUDA is never faster).
DEFAULT_PRECISIONS: dict[str, tuple[str, ...]] = {"cpu": ("fp32", "bf16"), "cuda": ("fp16", "bf16")}
BASELINE_STEPS = 50


@dataclass(frozen=True, order=True)
class Setting:
    """One point of the search space."""

    scheduler: str
    steps: int
    precision: str
    optimization: str = "none"

    @property
    def switches(self) -> list[str]:
        """``optimization`` as RunConfig.optimize switch names."""
        return label_switches(self.optimization)

    @property
    def label(self) -> str:
        """``unipc, 10 steps, bf16, channels_last``: how tables and messages name it."""
        text = f"{self.scheduler}, {self.steps} steps, {self.precision}"
        return text + (f", {self.optimization}" if self.optimization != "none" else "")


def _takes(label: str, denoiser: str, family: str | None = None) -> bool:
    try:
        Optimizations.parse(label_switches(label)).check_model(denoiser, family)
    except ConfigError:
        return False
    return True


def unet_calls(setting: Setting) -> int:
    """UNet calls of one image (second-order schedulers make two per step): the pruning cost."""
    spec = SCHEDULERS.get(setting.scheduler)
    return setting.steps * (spec.evals_per_step if spec is not None else 1)


@dataclass(frozen=True)
class SearchSpace:
    """The axes searched and the baseline; build with :meth:`for_device` (it checks every value)."""

    schedulers: tuple[str, ...]
    steps: tuple[int, ...]
    precisions: tuple[str, ...]
    optimizations: tuple[str, ...]
    baseline: Setting

    @classmethod
    def for_device(
        cls,
        device: torch.device,
        *,
        schedulers: Sequence[str] | None = None,
        steps: Sequence[int] | None = None,
        precisions: Sequence[str] | None = None,
        optimizations: Sequence[str] | None = None,
        baseline_steps: int = BASELINE_STEPS,
        model: str | None = None,
    ) -> SearchSpace:
        """The default space for ``device`` (and ``model``: its scheduler kind and denoiser, read from
        its configs), with any axis replaced; invalid values raise ConfigError."""
        from diffprof.engine.model_facts import ModelFacts, model_facts

        facts = model_facts(model) if model is not None else ModelFacts()
        scheduler_kind = facts.kind or SchedulerKind(flow=False)
        kind = "cuda" if device.type == "cuda" else "cpu"
        if schedulers:
            scheds = tuple(dict.fromkeys(schedulers))
            for s in scheds:
                check_scheduler(s)
                if facts.kind is not None:
                    check_applies(s, facts.kind, str(model))
        else:
            fits = applicable(scheduler_kind)
            scheds = tuple(s for s in (DEFAULT_FLOW_SCHEDULERS if scheduler_kind.flow else DEFAULT_SCHEDULERS) if s in fits)
        counts = tuple(sorted(set(steps or DEFAULT_STEPS)))
        for n in counts:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"step counts must be whole numbers >= 1, got {n!r}", "e.g. --step-counts 10,20,30")
        precs = tuple(dict.fromkeys(resolve_precision(p, device) for p in (precisions or DEFAULT_PRECISIONS[kind])))  # auto/half per device
        opts = tuple(dict.fromkeys(optimizations or DEFAULT_OPTIMIZATIONS[kind]))
        if facts.denoiser is not None:
            if optimizations:
                for o in opts:
                    Optimizations.parse(label_switches(o)).check_model(facts.denoiser, facts.family)
            else:  # the defaults keep what the model takes (sliced attention is the UNet's)
                opts = tuple(o for o in opts if _takes(o, facts.denoiser, facts.family))
        for p in precs:
            for o in opts:
                Optimizations.parse(label_switches(o)).validate(device, p)
        if not (scheds and counts and precs and opts):
            raise ConfigError("the search space is empty", "give at least one scheduler, step count, precision and optimization")
        baseline = Setting(DEFAULT, baseline_steps, "fp16" if kind == "cuda" else "fp32")
        return cls(scheds, counts, precs, opts, baseline)

    @property
    def diffprof_default(self) -> Setting:
        """diffprof's own default: the baseline's scheduler and precision at ``RunConfig``'s default steps."""
        from diffprof.config import RunConfig

        return Setting(self.baseline.scheduler, int(RunConfig.default_of("steps")), self.baseline.precision, self.baseline.optimization)

    @property
    def first_precision(self) -> str:
        """The precision the scheduler x steps grid is searched at: the baseline's when searched."""
        return self.baseline.precision if self.baseline.precision in self.precisions else self.precisions[0]

    @property
    def first_optimization(self) -> str:
        return "none" if "none" in self.optimizations else self.optimizations[0]

    def grid_setting(self, scheduler: str, steps: int) -> Setting:
        """A scheduler x steps point at the grid's precision and optimization."""
        return Setting(scheduler, steps, self.first_precision, self.first_optimization)

    @property
    def size(self) -> int:
        """How many settings the full grid holds (what the search avoids measuring)."""
        return len(self.schedulers) * len(self.steps) * len(self.precisions) * len(self.optimizations)
