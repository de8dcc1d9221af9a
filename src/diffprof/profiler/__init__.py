"""diffprof's profiler: nested, labelled, thread-safe operations at a chosen level of detail.

    from diffprof.profiler import Profiler
    profiler = Profiler(level="standard")
    with profiler.profile_operation("diffusion_image_generation", "model_inference", steps=30):
        pipe(prompt)
    profile = profiler.profile()          # one synchronize; GPU times resolved
    profile.stats()                       # per (category, name): median, p90, IQR, ...
    get_exporter("chrome").write(profile, "trace.json")

Names are imported on first use (PEP 562), so reading the plain data of ``profiler.record`` (the
levels the config schema checks) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from diffprof.profiler.exporters import EXPORTERS, get_exporter
    from diffprof.profiler.profiler import Operation, Profiler, check_level, measure_overhead
    from diffprof.profiler.record import LEVELS, Level, OperationRecord, OperationStats, Profile
    from diffprof.profiler.trackers import cupti_left_attached

_EXPORTS = {
    "EXPORTERS": "exporters",
    "get_exporter": "exporters",
    "Operation": "profiler",
    "Profiler": "profiler",
    "check_level": "profiler",
    "measure_overhead": "profiler",
    "LEVELS": "record",
    "Level": "record",
    "OperationRecord": "record",
    "OperationStats": "record",
    "Profile": "record",
    "cupti_left_attached": "trackers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"diffprof.profiler.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'diffprof.profiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
