"""Getting a diffusers pipeline's weights, from any source.

Presets (``presets``), the offline CLIP tokenizer (``tokenizer``), the full-size architectures with
random weights (``synthetic``) and tiny built-in models (``tiny``), loading from the Hub, a folder or
a single file (``sources``), and writing folders and single files (``materialize``). Names are
imported lazily: listing presets must not pay for importing diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelPreset": "presets", "PRESETS": "presets", "DEFAULT_MODEL": "presets", "get_preset": "presets",
    "Family": "presets",
    "clip_tokenizer": "tokenizer",
    "LoadedPipeline": "sources", "load_pipeline": "sources", "WEIGHTS_SOURCES": "sources",
    "build_tiny": "tiny",
    "build_models": "synthetic", "build_pipeline": "synthetic", "parameter_count": "synthetic",
    "save_single_file": "materialize",  # `materialize` itself: import it from diffprof.models.materialize
}

__all__ = [  # noqa: RUF022 - grouped by module, as _EXPORTS
    "ModelPreset",
    "PRESETS",
    "DEFAULT_MODEL",
    "get_preset",
    "Family",
    "clip_tokenizer",
    "LoadedPipeline",
    "load_pipeline",
    "WEIGHTS_SOURCES",
    "build_tiny",
    "build_models",
    "build_pipeline",
    "parameter_count",
    "save_single_file",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
