"""The names a config takes from registries above the schema, checked before anything is measured.

:meth:`RunConfig.validate` checks every field by its type, range and static choices but imports
nothing above layer 1, so the names that belong to the engine's and the suites' registries
(schedulers, optimization switches and their combinations, suites, executors) are checked here.
Every entry point calls :func:`check_config` before it measures: ``Runner.run`` (so ``bench``,
``calibrate`` and :class:`~diffprof.seo.DiffusionBenchmark`), ``generate``, ``tune``.

The registries are imported cheapest first (scheduler and executor names are plain data), so a
misspelt scheduler is refused before the switch registry loads.
"""

from __future__ import annotations

from diffprof.config import RunConfig
from diffprof.errors import ConfigError


def check_config(config: RunConfig) -> RunConfig:
    """``config`` itself when every registry name in it is known; else a :class:`ConfigError` that
    names the closest valid name."""
    from diffprof.engine.schedulers import SCHEDULERS, check_scheduler

    for name in (config.scheduler, *config.schedulers, config.reference_scheduler):
        check_scheduler(name)
    spec = SCHEDULERS.get(config.reference_scheduler)
    if spec is not None and spec.stochastic:
        raise ConfigError(
            f"reference_scheduler {config.reference_scheduler!r} is stochastic: its solves never converge to one image",
            "use a deterministic solver such as dpmpp_2m, unipc or ddim",
        )
    from diffprof.suites.executors import check_executor

    check_executor(config.executor)
    from diffprof.engine.switches import Optimizations, label_switches

    Optimizations.parse(config.optimize)
    for label in config.memory_optimizations:
        Optimizations.parse(label_switches(label))
    from diffprof.suites.base import check_suites

    check_suites(config.suites)
    check_model(config)
    return config


def check_inputs(config: RunConfig) -> None:
    """Refuse, before a run is recorded, what would fail every cell: a model that is neither a
    preset, a path nor (with ``--weights hub``) a repository id, and a device this host lacks (for
    executors that run here). A typo then costs an error line, not a run of failed cells; the model
    is checked first, without importing torch."""
    from diffprof.models.resolve import resolve_source

    swept = config.models if "pipelines" in config.suites or "all" in config.suites else []
    for model in dict.fromkeys([config.model, *swept]):
        resolve_source(model, config.weights)
    if config.executor in ("serial", "local") and config.device != "auto":
        from diffprof.engine.devices import resolve_engine_device

        resolve_engine_device(config.device)


def check_model(config: RunConfig) -> None:
    """What the model's configs already rule out (:mod:`~diffprof.engine.model_facts`): sizes that are
    not multiples of its token, a scheduler of the other kind, a task its family has no pipeline for,
    switches its denoiser does not take. Models known only once loaded are checked by the engine."""
    from diffprof.config import parse_resolution
    from diffprof.engine.schedulers import check_applies
    from diffprof.engine.switches import Optimizations
    from diffprof.engine.model_facts import check_multiple, model_facts

    facts = model_facts(config.model)
    check_multiple(config.width, config.height, facts.size_multiple, config.model, facts.denoiser)
    for text in config.resolutions:
        check_multiple(*parse_resolution(text), facts.size_multiple, config.model, facts.denoiser)
    if facts.kind is not None:
        check_applies(config.scheduler, facts.kind, config.model, config.task)
        if config.reference_scheduler != RunConfig.default_of("reference_scheduler"):  # the default adapts (quality.scoring)
            check_applies(config.reference_scheduler, facts.kind, config.model)
    if facts.tasks is not None and config.task not in facts.tasks:
        raise ConfigError(f"{config.model} has no {config.task} pipeline in diffusers", f"its family runs: {', '.join(facts.tasks)}")
    if facts.denoiser is not None or facts.family is not None:
        Optimizations.parse(config.optimize, denoiser=facts.denoiser).check_model(facts.denoiser, facts.family)
