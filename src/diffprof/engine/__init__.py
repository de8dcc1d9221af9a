"""Load pipelines from any weight source and run every task instrumented per component.

Names are imported on first use (PEP 562): ``diffprof.engine.schedulers`` and the other registries
the config checks import without torch or diffusers, so a bad flag is refused fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from diffprof.engine.engine import Engine, GenerationResult, LoadInfo
    from diffprof.engine.switches import Optimizations
    from diffprof.engine.schedulers import SCHEDULERS
    from diffprof.engine.timing import CallTiming
    from diffprof.request import GenerationRequest

_EXPORTS = {
    "Engine": "diffprof.engine.engine",
    "GenerationResult": "diffprof.engine.engine",
    "LoadInfo": "diffprof.engine.engine",
    "GenerationRequest": "diffprof.request",
    "Optimizations": "diffprof.engine.switches",
    "SCHEDULERS": "diffprof.engine.schedulers",
    "CallTiming": "diffprof.engine.timing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffprof.engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
