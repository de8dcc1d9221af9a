"""Schedulers by short name, swapped with ``from_config`` so weights are never reloaded.

Names follow the community's (A1111 / diffusers docs) so users can type what they already say.
``model_evals(name, steps)`` matters for benchmarking: second-order solvers (heun, dpm2) run the
denoiser about twice per step, so their per-step cost is not comparable to first-order ones.

Two kinds: noise-schedule solvers (DDIM, Euler, DPM-Solver++ ... for SD, SDXL, PixArt) and
flow-matching ones (``flow_*``: FlowMatchEuler, FlowMatchHeun, and DPM-Solver / UniPC / DEIS on flow
sigmas, for SD3, FLUX, SANA and other rectified-flow models). A model takes only its own kind
(:func:`applies`: a noise solver on a flow model runs, but integrates the wrong equation); a flow
solver carries the model's shift (``shift`` / ``flow_shift``) and dynamic shifting over from its
config. FLUX-style pipelines hand the scheduler their own sigma schedule, so solvers whose
``set_timesteps`` takes no ``sigmas`` are refused on them too; img2img and inpainting on a flow model
noise the init image with the scheduler's ``scale_noise``, which only the FlowMatch classes have.

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
    #: A flow-matching solver (for SD3, FLUX, SANA ...) rather than a noise-schedule one.
    flow: bool = False
    #: The solver of the other kind that does the same (``dpmpp_2m`` <-> ``flow_dpmpp_2m``): what a
    #: default reference solve switches to on a model of the other kind.
    counterpart: str | None = None


def _flow(name: str, class_name: str, description: str, evals_per_step: int = 1, counterpart: str | None = None,
          **kwargs: Any) -> SchedulerSpec:
    """A flow-matching spec; non-FlowMatch classes integrate flow sigmas with flow prediction."""
    if not class_name.startswith("FlowMatch"):
        kwargs = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", **kwargs}
    return SchedulerSpec(name, class_name, description, kwargs, evals_per_step, flow=True, counterpart=counterpart)


_SPECS = [
    SchedulerSpec("ddim", "DDIMScheduler", "DDIM: deterministic first-order; the classic 50-step sampler"),
    SchedulerSpec("ddpm", "DDPMScheduler", "DDPM: the original ancestral sampler; needs hundreds of steps", stochastic=True),
    SchedulerSpec("pndm", "PNDMScheduler", "PNDM (PLMS): linear multistep; the SD 1.x default", {"skip_prk_steps": True}),
    SchedulerSpec("lms", "LMSDiscreteScheduler", "LMS: linear multistep on Karras-style sigmas (needs scipy)"),
    SchedulerSpec("euler", "EulerDiscreteScheduler", "Euler: first-order ODE solver; fast and predictable (MLPerf SDXL uses it)", counterpart="flow_euler"),
    SchedulerSpec("euler_karras", "EulerDiscreteScheduler", "Euler on Karras sigmas", {"use_karras_sigmas": True}),
    SchedulerSpec("euler_a", "EulerAncestralDiscreteScheduler", "Euler ancestral: adds noise each step; never converges to one image", stochastic=True),
    SchedulerSpec("heun", "HeunDiscreteScheduler", "Heun: second-order; ~2 UNet calls per step, better per step, not per second", evals_per_step=2,
                  counterpart="flow_heun"),
    SchedulerSpec(
        "dpmpp_2m",
        "DPMSolverMultistepScheduler",
        "DPM-Solver++(2M): second-order multistep at one UNet call per step; good in 20-25 steps",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        counterpart="flow_dpmpp_2m",
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
    SchedulerSpec("dpm_single", "DPMSolverSinglestepScheduler", "DPM-Solver single-step (order 2)", counterpart="flow_dpm_single"),
    SchedulerSpec("unipc", "UniPCMultistepScheduler", "UniPC: predictor-corrector multistep; strong at 10-20 steps", counterpart="flow_unipc"),
    SchedulerSpec("deis", "DEISMultistepScheduler", "DEIS: exponential-integrator multistep", counterpart="flow_deis"),
    SchedulerSpec("dpm2", "KDPM2DiscreteScheduler", "DPM2 (k-diffusion): second-order, ~2 UNet calls per step", evals_per_step=2),
    SchedulerSpec("dpm2_a", "KDPM2AncestralDiscreteScheduler", "DPM2 ancestral: stochastic second-order", evals_per_step=2, stochastic=True),
    # flow matching (SD3, FLUX, SANA, QwenImage ...)
    _flow("flow_euler", "FlowMatchEulerDiscreteScheduler", "Flow-matching Euler: the SD3 / FLUX default (shift, dynamic shifting)", counterpart="euler"),
    _flow("flow_euler_karras", "FlowMatchEulerDiscreteScheduler", "Flow-matching Euler on Karras-spaced sigmas", use_karras_sigmas=True),
    _flow("flow_heun", "FlowMatchHeunDiscreteScheduler", "Flow-matching Heun: second-order, ~2 denoiser calls per step", 2, counterpart="heun"),
    _flow("flow_dpmpp_2m", "DPMSolverMultistepScheduler", "DPM-Solver++(2M) on flow sigmas: SANA's default; good in 20 steps",
          counterpart="dpmpp_2m", algorithm_type="dpmsolver++", solver_order=2),
    _flow("flow_dpm_single", "DPMSolverSinglestepScheduler", "DPM-Solver single-step (order 2) on flow sigmas", counterpart="dpm_single"),
    _flow("flow_unipc", "UniPCMultistepScheduler", "UniPC on flow sigmas: predictor-corrector multistep", counterpart="unipc"),
    _flow("flow_deis", "DEISMultistepScheduler", "DEIS on flow sigmas: exponential-integrator multistep", counterpart="deis"),
]

SCHEDULERS: dict[str, SchedulerSpec] = {s.name: s for s in _SPECS}

#: What the schedulers suite and ``tune`` sweep on a flow-matching model when no list is given (a
#: model takes only its own kind; :func:`applicable` drops those its pipeline cannot run).
FLOW_DEFAULTS: tuple[str, ...] = ("flow_euler", "flow_heun", "flow_dpmpp_2m", "flow_unipc", "flow_euler_karras")

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


@dataclass(frozen=True)
class SchedulerKind:
    """Which schedulers a model takes: ``flow`` (a flow-matching model) and ``sets_sigmas`` (its
    pipeline hands the scheduler its own sigma schedule: FLUX, QwenImage, FLUX.2)."""

    flow: bool
    sets_sigmas: bool = False

    @property
    def name(self) -> str:
        return "flow-matching" if self.flow else "noise-schedule"


def refusal(name: str, kind: SchedulerKind, model: str = "this model", task: str = "txt2img") -> str | None:
    """Why scheduler ``name`` cannot run ``task`` on a model of ``kind`` (``None`` when it can)."""
    if name == DEFAULT:
        return None
    spec = get_scheduler_spec(name)
    if spec.flow != kind.flow:
        return (f"{name} is a {'flow-matching' if spec.flow else 'noise-schedule'} solver and {model} is a {kind.name} model: "
                "it would integrate the wrong equation")
    if kind.sets_sigmas and spec.flow and not _has(spec.class_name, "set_timesteps", "sigmas"):
        return f"{model}'s pipeline sets its own sigma schedule, which {spec.class_name}.set_timesteps cannot take"
    if task != "txt2img" and spec.flow and not _has(spec.class_name, "scale_noise"):
        return f"{name} cannot run {task} on {model}: flow-matching pipelines noise the init image with scale_noise, which {spec.class_name} lacks"
    return None


def applicable(kind: SchedulerKind, task: str = "txt2img") -> list[str]:
    """Every registered scheduler a model of ``kind`` can run ``task`` with, in registry order."""
    return [n for n in SCHEDULERS if refusal(n, kind, task=task) is None]


def taking(kind: SchedulerKind, task: str, method: str, parameter: str) -> list[str]:
    """The schedulers :func:`applicable` gives whose ``method`` takes ``parameter``: what a pipeline that
    hands it one can be swapped to."""
    return [n for n in applicable(kind, task) if _has(get_scheduler_spec(n).class_name, method, parameter)]


def check_applies(name: str, kind: SchedulerKind, model: str = "this model", task: str = "txt2img") -> None:
    """Refuse ``name`` on a model of ``kind`` with the reason and the schedulers that do apply."""
    reason = refusal(name, kind, model, task)
    if reason is not None:
        what = f"{kind.name} schedulers for {model}" + (f" ({task})" if task != "txt2img" else "")
        raise ConfigError(f"scheduler {reason}", f"{what}: {', '.join(applicable(kind, task))} (or default)")


def for_reference(name: str, kind: SchedulerKind) -> str:
    """``name`` when it runs on ``kind``, else its counterpart of the other kind, else the kind's Euler:
    what a default reference solve uses on a model of the other kind."""
    spec = get_scheduler_spec(name) if name != DEFAULT else None
    for candidate in (name, spec.counterpart if spec else None, "flow_euler" if kind.flow else "euler"):
        if candidate is not None and refusal(candidate, kind) is None:
            return candidate
    return DEFAULT


def _has(class_name: str, method: str, parameter: str | None = None) -> bool:
    """Whether diffusers' ``class_name`` has ``method`` (taking ``parameter``, when given)."""
    import inspect

    import diffusers

    fn = getattr(getattr(diffusers, class_name), method, None)
    return fn is not None and (parameter is None or parameter in inspect.signature(fn).parameters)


def make_scheduler(name: str, base_config: Any) -> Any:
    """A new scheduler of kind ``name`` from another scheduler's config (``from_config``).

    Only the algorithm changes; the model's training schedule (betas, prediction type, timestep
    spacing; for flow models the shift and dynamic shifting) carries over, which is why this never
    needs the weights.
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
    import inspect

    accepted = inspect.signature(cls.__init__).parameters  # register_to_config wraps __init__; the signature follows it
    overrides: dict[str, Any] = {"use_karras_sigmas": False} if "use_karras_sigmas" in accepted else {}
    if spec.flow:  # FlowMatch classes call the shift `shift`, flow-sigma solvers `flow_shift`
        shift = base_config.get("shift", base_config.get("flow_shift"))
        if shift is not None:
            overrides["shift" if "shift" in accepted and "flow_shift" not in accepted else "flow_shift"] = float(shift)
    overrides.update(spec.kwargs)
    return cls.from_config(base_config, **overrides)


def model_evals(name: str, steps: int, base_config: Any, strength: float = 1.0) -> int:
    """UNet evaluations one call makes for ``steps`` (PNDM adds one, Heun/DPM2 nearly double).

    Counted from the scheduler's own timesteps rather than a table, so it stays true as
    diffusers changes its solvers. ``strength`` < 1 (img2img, inpaint) skips the first steps as
    diffusers' ``get_timesteps`` does: ``steps - int(steps * strength)`` of them, times the solver's
    order (the FLUX and SD3 pipelines round the other way, at most one step apart).
    """
    scheduler = make_scheduler(name, base_config) if name != DEFAULT else _from_own_config(base_config)
    import inspect

    takes_mu = "mu" in inspect.signature(scheduler.set_timesteps).parameters
    dynamic = {"mu": 0.0} if takes_mu and scheduler.config.get("use_dynamic_shifting") else {}  # the count does not depend on mu
    scheduler.set_timesteps(steps, **dynamic)
    total = len(scheduler.timesteps)
    if strength >= 1:
        return total
    skipped = max(steps - min(int(steps * strength), steps), 0)
    return max(0, total - skipped * int(getattr(scheduler, "order", 1)))


def kind_of_model(model: str) -> SchedulerKind | None:
    """The scheduler kind of a preset or a local diffusers folder, read from configs (no weights, no
    diffusers import); ``None`` when it cannot be told before loading (a Hub id, a single file)."""
    import json
    from pathlib import Path

    from diffprof.models.families import CLASS_FAMILIES, FAMILIES, is_flow_config
    from diffprof.models.presets import PRESETS

    preset = PRESETS.get(model)
    if preset is not None:
        return SchedulerKind(preset.spec.flow_matching, preset.spec.sets_sigmas)
    folder = Path(model).expanduser()
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = FAMILIES.get(CLASS_FAMILIES.get(str(index.get("_class_name")), ""))
    flow = is_flow_config(config)
    return SchedulerKind(flow, family.sets_sigmas if family is not None else flow)


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
