"""The ``SEOConfig`` field names users already have, each mapped onto :class:`RunConfig` fields.

Every alias does what its name says: ``diffusion_steps`` sets ``steps``, a ``profile_*`` flag adds
its suite, ``enable_sequential_cpu_offload`` adds the switch. :meth:`RunConfig.from_mapping` applies
them; an alias writes into the mapping of values being built and may add suites.
"""

from __future__ import annotations

from typing import Any


def _set(name: str) -> Any:
    """The alias sets field ``name``; the schema checks the value by that field's type (a cast here
    would turn ``"false"`` into True and ``null`` into a traceback)."""

    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        values[name] = value

    return apply


def _suite(suite: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        if value:
            suites.append(suite)

    return apply


def _suites(*names: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        if value:
            suites.extend(names)

    return apply


def _flag_optimization(switch: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        opts = [o for o in values.get("optimize", []) if o != switch]
        values["optimize"] = opts + [switch] if value else opts

    return apply


def _benchmark_schedulers(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    if isinstance(value, (list, tuple)):
        values["schedulers"] = list(value)
        suites.append("schedulers")
    elif value:
        suites.append("schedulers")


def _memory_efficient_attention(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    import importlib.util

    opts = [o for o in values.get("optimize", []) if o not in ("xformers", "eager_attention", "sdpa")]
    if value:  # xformers when present, else SDPA's memory-efficient kernels (the default)
        if importlib.util.find_spec("xformers") is not None:
            opts.append("xformers")
    else:
        opts.append("eager_attention")
    values["optimize"] = opts


def _enable_profiling(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    values["profile_level"] = "detailed" if value else "standard"


def _mixed_precision(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    values["precision"] = "half" if value else "fp32"


#: SEOConfig field -> how it maps onto RunConfig (each does what its name says).
SEO_ALIASES: dict[str, Any] = {
    "use_diffusion": _set("use_diffusion"),
    "diffusion_model_name": _set("model"),
    "diffusion_steps": _set("steps"),
    "diffusion_guidance_scale": _set("guidance"),
    "diffusion_height": _set("height"),
    "diffusion_width": _set("width"),
    "enable_code_profiling": _enable_profiling,
    "profile_diffusion_generation": _suite("generation"),
    "profile_scheduler_performance": _suite("schedulers"),
    "profile_resolution_scaling": _suite("resolutions"),
    "enable_memory_efficient_attention": _memory_efficient_attention,
    "enable_sequential_cpu_offload": _flag_optimization("sequential_cpu_offload"),
    "use_diffusion_mixed_precision": _mixed_precision,
    "profile_pipeline_variants": _suite("pipelines"),
    "benchmark_schedulers": _benchmark_schedulers,
    "profile_advanced_features": _suites("memory", "precision"),
}
