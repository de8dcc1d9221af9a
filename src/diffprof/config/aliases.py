"""The ``SEOConfig`` field names users already have, each mapped onto :class:`RunConfig` fields.

Every alias does what its name says: ``diffusion_steps`` sets ``steps``, a ``profile_*`` flag adds
its suite, ``enable_sequential_cpu_offload`` adds the switch, ``enable_code_profiling`` asks for the
basic profiling the seed promises (level ``standard``). :meth:`RunConfig.from_mapping` applies them;
an alias writes into the mapping of values being built and may add suites. Flags take true or false
only, and a key given by its diffprof name in the same mapping wins over the alias of that field.
"""

from __future__ import annotations

from typing import Any

from diffprof.errors import ConfigError


def _flag(name: str, value: Any) -> bool:
    """A seed flag's value: true or false, nothing else (``"false"`` is text, and truthy)."""
    if not isinstance(value, bool):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        quoted = " without quotes" if isinstance(value, str) and value.strip().lower() in ("true", "false") else ""
        raise ConfigError(f"{name} must be true or false, got {shown}", f"write true or false{quoted}")
    return value


def _set(name: str) -> Any:
    """The alias sets field ``name``; the schema checks the value by that field's type (a cast here
    would turn ``"false"`` into True and ``null`` into a traceback)."""

    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        values[name] = value

    return apply


def _suite(suite: str, name: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        if _flag(name, value):
            suites.append(suite)

    return apply


def _suites(name: str, *names: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        if _flag(name, value):
            suites.extend(names)

    return apply


def _flag_optimization(switch: str, name: str) -> Any:
    def apply(values: dict[str, Any], value: Any, suites: list[str]) -> None:
        on = _flag(name, value)
        opts = [o for o in values.get("optimize", []) if o != switch]
        values["optimize"] = opts + [switch] if on else opts

    return apply


def _benchmark_schedulers(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    """true/false (the schedulers suite with its default list, or not), or the schedulers to compare
    (a list, or one comma-separated string); each name is checked as the schedulers field's."""
    if isinstance(value, (list, tuple, str)):
        values["schedulers"] = value  # checked (and a string split at commas) by the schema
        suites.append("schedulers")
    elif value is not None and not isinstance(value, bool):
        raise ConfigError(f"benchmark_schedulers must be true, false or a list of scheduler names, got {value!r}"[:200],
                          "e.g. benchmark_schedulers: [euler, dpmpp_2m] (see `diffprof schedulers`)")
    elif value:
        suites.append("schedulers")


def _memory_efficient_attention(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    import importlib.util

    on = _flag("enable_memory_efficient_attention", value)
    opts = [o for o in values.get("optimize", []) if o not in ("xformers", "eager_attention", "sdpa")]
    if on:  # xformers when present, else SDPA's memory-efficient kernels (the default)
        if importlib.util.find_spec("xformers") is not None:
            opts.append("xformers")
    else:
        opts.append("eager_attention")
    values["optimize"] = opts


def _enable_profiling(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    """The seed promises 2-5% overhead for its basic code profiling: that is level ``standard``
    (wall time, host RSS, CUDA events and memory peaks), on or off. ``detailed`` (kernel captures)
    makes each call several times slower (tiny-sd on a CPU: 68 -> 398 ms per image), so it is never
    turned on by this flag; ask for it by name (``profile_level: detailed``)."""
    _flag("enable_code_profiling", value)
    values["profile_level"] = "standard"


def _mixed_precision(values: dict[str, Any], value: Any, suites: list[str]) -> None:
    values["precision"] = "half" if _flag("use_diffusion_mixed_precision", value) else "fp32"


#: SEOConfig field -> how it maps onto RunConfig (each does what its name says).
SEO_ALIASES: dict[str, Any] = {
    "use_diffusion": _set("use_diffusion"),
    "diffusion_model_name": _set("model"),
    "diffusion_steps": _set("steps"),
    "diffusion_guidance_scale": _set("guidance"),
    "diffusion_height": _set("height"),
    "diffusion_width": _set("width"),
    "enable_code_profiling": _enable_profiling,
    "profile_diffusion_generation": _suite("generation", "profile_diffusion_generation"),
    "profile_scheduler_performance": _suite("schedulers", "profile_scheduler_performance"),
    "profile_resolution_scaling": _suite("resolutions", "profile_resolution_scaling"),
    "enable_memory_efficient_attention": _memory_efficient_attention,
    "enable_sequential_cpu_offload": _flag_optimization("sequential_cpu_offload", "enable_sequential_cpu_offload"),
    "use_diffusion_mixed_precision": _mixed_precision,
    "profile_pipeline_variants": _suite("pipelines", "profile_pipeline_variants"),
    "benchmark_schedulers": _benchmark_schedulers,
    "profile_advanced_features": _suites("profile_advanced_features", "memory", "precision"),
}
