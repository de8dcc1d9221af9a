"""Getting a diffusers pipeline's weights, from any source.

Presets (``presets``) and their pipeline families (``families``), the offline CLIP tokenizer
(``tokenizer``) and stand-ins for the T5 / Gemma vocabularies (``stand_ins``), the full-size
architectures with random weights (``synthetic``) and tiny built-in models (``tiny``), loading from
the Hub, a folder or a single file (``sources``, ``single_file``), and writing folders and single
files (``materialize``, ``ldm``, ``dit_single_file``). Names are
imported lazily: listing presets must not pay for importing diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelPreset": "presets", "PRESETS": "presets", "DEFAULT_MODEL": "presets", "get_preset": "presets",
    "Family": "presets",
    "FAMILIES": "families", "FamilySpec": "families", "get_family": "families",
    "clip_tokenizer": "tokenizer", "stand_in_tokenizer": "stand_ins",
    "LoadedPipeline": "sources", "load_pipeline": "sources", "WEIGHTS_SOURCES": "sources",
    "build_tiny": "tiny",
    "build_models": "synthetic", "build_pipeline": "synthetic", "parameter_count": "synthetic",
    "stored_count": "synthetic", "for_task": "pipelines",
    "save_single_file": "materialize",  # `materialize` itself: import it from diffprof.models.materialize
}

__all__ = [  # noqa: RUF022 - grouped by module, as _EXPORTS
    "ModelPreset",
    "PRESETS",
    "DEFAULT_MODEL",
    "get_preset",
    "Family",
    "FAMILIES",
    "FamilySpec",
    "get_family",
    "clip_tokenizer",
    "stand_in_tokenizer",
    "LoadedPipeline",
    "load_pipeline",
    "WEIGHTS_SOURCES",
    "build_tiny",
    "build_models",
    "build_pipeline",
    "parameter_count",
    "stored_count",
    "for_task",
    "save_single_file",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
