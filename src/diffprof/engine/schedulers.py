"""Schedulers by short name, swapped with ``from_config`` so weights are never reloaded.

Names follow the community's (A1111 / diffusers docs) so users can type what they already say.
``model_evals(name, steps)`` matters for benchmarking: second-order solvers (heun, dpm2) run the
UNet about twice per step, so their per-step cost is not comparable to first-order ones.

The names are plain data; diffusers is imported only by the functions that build schedulers, so
checking a name (``check_scheduler``) costs no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffprof.errors import ConfigError, unknown_choice
from diffprof.request import DEFAULT_SCHEDULER


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    class_name: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: UNet evaluations per step (2 for Heun-type solvers, minus one at the end).
    evals_per_step: int = 1
    stochastic: bool = False
    #: Extra package the scheduler needs (None when diffusers alone suffices).
    requires: str | None = None


_SPECS = [
    SchedulerSpec("ddim", "DDIMScheduler", "DDIM: deterministic first-order; the classic 50-step sampler"),
    SchedulerSpec("ddpm", "DDPMScheduler", "DDPM: the original ancestral sampler; needs hundreds of steps", stochastic=True),
    SchedulerSpec("pndm", "PNDMScheduler", "PNDM (PLMS): linear multistep; the SD 1.x default", {"skip_prk_steps": True}),
    SchedulerSpec("lms", "LMSDiscreteScheduler", "LMS: linear multistep on Karras-style sigmas (needs scipy)"),
    SchedulerSpec("euler", "EulerDiscreteScheduler", "Euler: first-order ODE solver; fast and predictable (MLPerf SDXL uses it)"),
    SchedulerSpec("euler_karras", "EulerDiscreteScheduler", "Euler on Karras sigmas", {"use_karras_sigmas": True}),
    SchedulerSpec("euler_a", "EulerAncestralDiscreteScheduler", "Euler ancestral: adds noise each step; never converges to one image", stochastic=True),
    SchedulerSpec("heun", "HeunDiscreteScheduler", "Heun: second-order; ~2 UNet calls per step, better per step, not per second", evals_per_step=2),
    SchedulerSpec(
        "dpmpp_2m",
        "DPMSolverMultistepScheduler",
        "DPM-Solver++(2M): second-order multistep at one UNet call per step; good in 20-25 steps",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    SchedulerSpec(
        "dpmpp_2m_karras",
        "DPMSolverMultistepScheduler",
        "DPM-Solver++(2M) on Karras sigmas: sharper at low step counts",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    SchedulerSpec(
        "dpmpp_2m_sde",
        "DPMSolverMultistepScheduler",
        "DPM-Solver++(2M) SDE: stochastic variant; more detail, needs more steps",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        stochastic=True,
    ),
    SchedulerSpec(
        "dpmpp_2m_sde_karras",
        "DPMSolverMultistepScheduler",
        "DPM-Solver++(2M) SDE on Karras sigmas",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        stochastic=True,
    ),
    SchedulerSpec("dpmpp_sde", "DPMSolverSDEScheduler", "DPM++ SDE: stochastic single-step, ~2 UNet calls per step", evals_per_step=2, stochastic=True, requires="torchsde"),
    SchedulerSpec("dpm_single", "DPMSolverSinglestepScheduler", "DPM-Solver single-step (order 2)"),
    SchedulerSpec("unipc", "UniPCMultistepScheduler", "UniPC: predictor-corrector multistep; strong at 10-20 steps"),
    SchedulerSpec("deis", "DEISMultistepScheduler", "DEIS: exponential-integrator multistep"),
    SchedulerSpec("dpm2", "KDPM2DiscreteScheduler", "DPM2 (k-diffusion): second-order, ~2 UNet calls per step", evals_per_step=2),
    SchedulerSpec("dpm2_a", "KDPM2AncestralDiscreteScheduler", "DPM2 ancestral: stochastic second-order", evals_per_step=2, stochastic=True),
]

SCHEDULERS: dict[str, SchedulerSpec] = {s.name: s for s in _SPECS}

#: Keeps the model's own scheduler (the preset's or the checkpoint's).
DEFAULT = DEFAULT_SCHEDULER


def get_scheduler_spec(name: str) -> SchedulerSpec:
    if name not in SCHEDULERS:
        raise unknown_choice("scheduler", name, [*SCHEDULERS, DEFAULT])
    return SCHEDULERS[name]


def check_scheduler(name: str) -> str:
    if name != DEFAULT:
        get_scheduler_spec(name)
    return name


def make_scheduler(name: str, base_config: Any) -> Any:
    """A new scheduler of kind ``name`` from another scheduler's config (``from_config``).

    Only the algorithm changes; the model's training schedule (betas, prediction type,
    timestep spacing) carries over, which is why this never needs the weights.
    """
    spec = get_scheduler_spec(name)
    if spec.requires:
        try:
            __import__(spec.requires)
        except ImportError as exc:
            raise ConfigError(f"scheduler {name!r} needs the {spec.requires!r} package", f"pip install {spec.requires}") from exc
    import diffusers

    cls = getattr(diffusers, spec.class_name)
    # Karras sigmas and other options are reset unless this spec sets them, so names mean one thing.
    overrides = {"use_karras_sigmas": False} if "use_karras_sigmas" in cls.__init__.__code__.co_varnames else {}
    overrides.update(spec.kwargs)
    return cls.from_config(base_config, **overrides)


def model_evals(name: str, steps: int, base_config: Any) -> int:
    """UNet evaluations one call makes for ``steps`` (PNDM adds one, Heun/DPM2 nearly double).

    Counted from the scheduler's own timesteps rather than a table, so it stays true as
    diffusers changes its solvers.
    """
    scheduler = make_scheduler(name, base_config) if name != DEFAULT else _from_own_config(base_config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def _from_own_config(config: Any) -> Any:
    import diffusers

    return getattr(diffusers, config["_class_name"]).from_config(config)


def name_of(scheduler: Any) -> str:
    """The short name of a scheduler object (what ``default`` turned out to be: ``pndm`` for SD 1.5's
    own), or its class name when no short name has its class and options."""
    cls = type(scheduler).__name__
    config = getattr(scheduler, "config", {}) or {}
    for spec in _SPECS:
        if spec.class_name != cls:
            continue
        wanted = {"use_karras_sigmas": False, **spec.kwargs} if "use_karras_sigmas" in config else dict(spec.kwargs)
        if all(config.get(k) == v for k, v in wanted.items()):
            return spec.name
    return cls
