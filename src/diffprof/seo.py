"""The methods users of an ``SEOConfig`` already call, on diffprof's machinery.

    from diffprof import DiffusionBenchmark, SEOConfig
    bench = DiffusionBenchmark(SEOConfig(diffusion_model_name="tiny-sd", diffusion_steps=20))
    bench.benchmark_diffusion_pipelines("a red circle")          # -> plain dict
    bench.profile_scheduler_performance("a red circle", ["euler", "dpmpp_2m"])
    bench.profile_memory_optimizations("a red circle")

Each method runs the matching suite through the same runner as ``diffprof bench`` and records a
run in the store (``config.db``), then returns plain dicts (JSON-serialisable) keyed by the swept
value, so existing code that printed or logged those dicts keeps working. Where one call runs two
suites over the same axis (``benchmark_diffusion_pipelines``: the generation cell and the pipelines
suite's cells are both keyed by model), the later suite's keys carry its name (``pipelines:sd15``),
so no cell overwrites another. What the device cannot run (the seed's sequential offload on a CPU)
is said on stderr before measuring and returned under ``notes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from diffprof.config import RunConfig
from diffprof.models.presets import DEFAULT_MODEL


@dataclass
class SEOConfig:
    """The seed configuration's field names, with their usual meanings and defaults.

    Any field left at its default takes diffprof's default; :meth:`to_run_config` maps the rest
    (see :data:`diffprof.config.SEO_ALIASES` for what each flag turns on).
    """

    use_diffusion: bool = True
    diffusion_model_name: str = DEFAULT_MODEL
    diffusion_steps: int = 20
    diffusion_guidance_scale: float = 7.5
    diffusion_height: int | None = None
    diffusion_width: int | None = None
    enable_code_profiling: bool = False
    profile_diffusion_generation: bool = True
    profile_scheduler_performance: bool = False
    profile_resolution_scaling: bool = False
    enable_memory_efficient_attention: bool = True
    enable_sequential_cpu_offload: bool = False
    use_diffusion_mixed_precision: bool = False
    profile_pipeline_variants: bool = False
    benchmark_schedulers: bool | list[str] = False
    profile_advanced_features: bool = False

    def to_run_config(self, **overrides: Any) -> RunConfig:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        config = RunConfig.from_mapping(data)
        return RunConfig.from_mapping(overrides, base=config) if overrides else config


def _as_run_config(config: SEOConfig | RunConfig | dict[str, Any] | str | Path | None, overrides: dict[str, Any]) -> RunConfig:
    if config is None:
        return RunConfig.from_mapping(overrides)
    if isinstance(config, SEOConfig):
        return config.to_run_config(**overrides)
    if isinstance(config, RunConfig):
        return RunConfig.from_mapping(overrides, base=config) if overrides else config
    if isinstance(config, (str, Path)):
        return RunConfig.load(config, overrides or None)
    if isinstance(config, dict):
        base = RunConfig.from_mapping(config)
        return RunConfig.from_mapping(overrides, base=base) if overrides else base
    # any object with SEOConfig-named attributes (the users' own config class)
    names = [f.name for f in fields(SEOConfig)] + RunConfig.field_names()
    data = {n: getattr(config, n) for n in names if hasattr(config, n)}
    base = RunConfig.from_mapping({k: v for k, v in data.items() if v is not None})
    return RunConfig.from_mapping(overrides, base=base) if overrides else base


class DiffusionBenchmark:
    """One object built from a config, offering the seed config's profiling methods.

    Args:
        config: an :class:`SEOConfig`, a :class:`RunConfig`, a mapping of either's keys, a path to a
            YAML/TOML/JSON file, or any object with SEOConfig-named attributes.
        **overrides: RunConfig fields to change (``db="runs.db"``, ``repeats=5``, ``threads=1``...).
    """

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        from diffprof.suites.checks import check_config

        self.config = check_config(_as_run_config(config, overrides))  # a bad name fails here, not in the first method
        self.last_run_id: int | None = None

    # --------------------------------------------------------------- methods
    def benchmark_diffusion_pipelines(self, prompt: str) -> dict[str, Any]:
        """Profile the configured pipeline (and its variants when ``profile_pipeline_variants``):
        per-component times, throughput and memory, keyed by model."""
        suites = ["generation"] + (["pipelines"] if "pipelines" in self.config.suites else [])
        return self._run(prompt, suites, key="model")

    def profile_scheduler_performance(self, prompt: str, schedulers: list[str] | None = None) -> dict[str, Any]:
        """Time per scheduler at the configured step count, keyed by scheduler name."""
        changes: dict[str, Any] = {}
        if schedulers is not None:
            changes["schedulers"] = list(schedulers)
        return self._run(prompt, ["schedulers"], key="scheduler", **changes)

    def profile_memory_optimizations(self, prompt: str) -> dict[str, Any]:
        """Peak memory and time per memory optimization, keyed by optimization."""
        return self._run(prompt, ["memory"], key="optimization")

    # ------------------------------------------------------------- plumbing
    def _run(self, prompt: str, suites: list[str], *, key: str, **changes: Any) -> dict[str, Any]:
        from rich.console import Console

        from diffprof.store import Store
        from diffprof.suites.runner import Runner

        config = RunConfig.from_mapping({"prompt": prompt, "suites": suites, **changes}, base=replace(self.config))
        with Store(config.db) as store:
            runner = Runner(config, store, command=f"python: DiffusionBenchmark {suites}", console=Console(stderr=True), progress=False)
            summary = runner.run()
        self.last_run_id = summary.run_id
        results: dict[str, Any] = {}
        for cell in summary.cells:
            entry = {"status": cell.status, "suite": cell.suite, **cell.metrics}
            if cell.error:
                entry["error"] = cell.error
            results[result_key(cell, key, first=suites[0])] = entry
        notes = [line for line in (runner.notice or "").splitlines() if line.strip()]
        return {"run_id": summary.run_id, "db": str(config.db), "ok": summary.ok, "failed": summary.failed, "results": results, "notes": notes}


def result_key(cell: Any, key: str, *, first: str) -> str:
    """A cell's key in a method's results: the swept value (``euler``, ``tiny-sd``); a cell of a later
    suite of the same call is prefixed with its suite (``pipelines:tiny-sd``), so the generation cell
    and the pipelines suite's cell of one model do not collide; several labels join with commas."""
    labels = cell.labels or {}
    value = labels.get(key, labels.get("model"))
    name = str(value) if value is not None else (", ".join(f"{k}={v}" for k, v in labels.items()) or cell.suite)
    return name if cell.suite == first else f"{cell.suite}:{name}"
