"""Benchmark suites: each sweeps one axis with everything else from the config."""

from diffprof.suites import (  # noqa: F401  (register)
    ablation,
    batch,
    calibration,
    generation,
    guidance,
    memory,
    pipelines,
    precision,
    quality,
    resolutions,
    schedulers,
    steps,
    tasks,
)
from diffprof.suites.base import GROUPS, SUITES, Cell, Suite, check_suites, expand
from diffprof.suites.checks import check_config

__all__ = ["GROUPS", "SUITES", "Cell", "Suite", "check_config", "check_suites", "expand"]
