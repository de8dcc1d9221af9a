"""diffprof: profile, benchmark and tune Hugging Face diffusers pipelines.

The main entry points, imported lazily so ``import diffprof`` stays cheap:

- :class:`~diffprof.profiler.Profiler`: ``profile_operation(name, category, **labels)``
- :class:`~diffprof.engine.Engine`: load a pipeline once, ``generate`` many times, timings per component
- :class:`~diffprof.config.RunConfig`: the one config schema (``SEOConfig`` field names accepted)
- :class:`~diffprof.seo.DiffusionBenchmark` / :class:`~diffprof.seo.SEOConfig`: the seed config's methods
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Profiler": "diffprof.profiler",
    "Engine": "diffprof.engine",
    "GenerationRequest": "diffprof.engine",
    "RunConfig": "diffprof.config",
    "SEOConfig": "diffprof.seo",
    "DiffusionBenchmark": "diffprof.seo",
    "Store": "diffprof.store",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffprof' has no attribute {name!r}")
