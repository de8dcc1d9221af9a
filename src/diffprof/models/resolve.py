"""Where a model would load from, decided without loading anything (and without importing torch).

:func:`resolve_source` turns what a user types (a preset name, a folder, a single file, a Hub id)
into the source :func:`~diffprof.models.sources.load_pipeline` will use, raising the error loading
would, so a sweep refuses a typo before it records a run, in a fraction of a second.

Hub repositories that moved keep working under their old ids: ``runwayml/stable-diffusion-v1-5``
(the id most SD 1.5 code still carries) is ``stable-diffusion-v1-5/stable-diffusion-v1-5`` since
runwayml's repositories were taken down; loading from the Hub maps the old id to the new one and
says so. A Hub id of a preset's repository with ``weights=synthetic`` builds that preset's
architecture with random weights, which needs no download.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from diffprof.errors import ConfigError, ModelError, unknown_choice
from diffprof.models.presets import PRESETS, ModelPreset, variant_for

WEIGHTS_SOURCES: tuple[str, ...] = ("auto", "hub", "synthetic", "builtin")
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

#: Hub repositories that moved: old id -> the id that holds the same files now.
MOVED_REPOS = {
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "runwayml/stable-diffusion-inpainting": "stable-diffusion-v1-5/stable-diffusion-inpainting",
}


def current_repo(repo_id: str) -> str:
    """``repo_id``, or where it moved (:data:`MOVED_REPOS`)."""
    return MOVED_REPOS.get(repo_id, repo_id)


def moved_note(repo_id: str) -> str:
    """`` (moved from OLD)`` when ``repo_id`` was given under an old name, else empty."""
    return f" (the repository moved: {repo_id} is now {MOVED_REPOS[repo_id]})" if repo_id in MOVED_REPOS else ""


def preset_of_repo(repo_id: str) -> ModelPreset | None:
    """The preset whose Hub repository is ``repo_id`` (old names included)."""
    target = current_repo(repo_id)
    return next((p for p in PRESETS.values() if p.hub_id == target), None)


def resolve_source(model: str | os.PathLike[str], weights: str = "auto", *, inpaint: bool | None = None) -> tuple[str, Any]:
    """Where ``model`` would load from, without loading it: ``("preset", ModelPreset)``,
    ``("folder", Path)``, ``("file", Path)`` or ``("hub", repo id)`` (the id as given; loading maps
    a moved one). Raises the error :func:`~diffprof.models.sources.load_pipeline` would."""
    if weights not in WEIGHTS_SOURCES:
        raise unknown_choice("weights source", weights, WEIGHTS_SOURCES, ConfigError)
    model = os.fspath(model)
    if model in PRESETS:
        preset = variant_for(PRESETS[model], inpaint)
        check_preset_weights(preset, weights)
        return "preset", preset
    path = Path(model).expanduser()
    if path.exists():
        if weights != "auto":
            raise ModelError(f"weights={weights!r} applies to presets; a path always loads its own weights",
                             f"drop --weights, or give a preset name ({', '.join(PRESETS)})")
        return ("folder" if path.is_dir() else "file"), path
    known = preset_of_repo(model) if looks_like_repo_id(model) else None
    if known is not None and weights == "synthetic":  # the preset's architecture, random weights: nothing to download
        return "preset", variant_for(known, inpaint)
    if weights == "hub" and looks_like_repo_id(model):
        return "hub", model
    if known is not None:
        raise ModelError(
            f"{model!r} is a Hugging Face Hub id{moved_note(model)}, and no local folder of that name exists",
            f"use the {known.name} preset with synthetic weights (its architecture, random weights, no download): "
            f"--model {known.name} --weights synthetic (in a config or DiffusionBenchmark: weights: synthetic); "
            "or --weights hub to download the real weights",
        )
    if _looks_like_path(model):
        raise ModelError(f"no such file or folder: {model!r}",
                         "give an existing diffusers folder or .safetensors file, or a preset name "
                         f"({', '.join(PRESETS)}); for a Hub repository id add --weights hub (in a config: weights: hub)")
    error = unknown_choice("model", model, PRESETS, ModelError)
    raise ModelError(error.message, f"{error.hint}; or give a diffusers folder or .safetensors file")


def check_preset_weights(preset: ModelPreset, weights: str) -> None:
    source = ("builtin" if preset.builtin else "hub") if weights == "auto" else weights
    if source == "builtin" and not preset.builtin:
        raise ModelError(f"model {preset.name!r} has no built-in weights",
                         f"use --weights synthetic (random weights, real architecture) or --weights hub; "
                         f"built-in models: {', '.join(n for n, p in PRESETS.items() if p.builtin)}")
    if source == "hub" and preset.hub_id is None:
        raise ModelError(f"model {preset.name!r} is built in and has no Hugging Face Hub repository",
                         "drop --weights hub (built-in weights are the default), or use --weights synthetic")


def looks_like_repo_id(text: str) -> bool:
    """``owner/name``: what a Hugging Face Hub repository id looks like (it may also be a relative path)."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith(".") or Path(text).suffix.lower() in (*SAFETENSORS_SUFFIXES, *PICKLE_SUFFIXES)


def hub_repo_of(model: str, weights: str) -> str | None:
    """The Hub repository ``model`` would download from with ``weights`` (None: it loads locally)."""
    kind, target = resolve_source(model, weights)
    if kind == "hub":
        return current_repo(target)
    if kind == "preset" and weights in ("auto", "hub") and not target.builtin:
        return target.hub_id
    return None


def offline_miss(model: str, weights: str) -> str | None:
    """Why ``model`` cannot load here, when it needs the Hub while ``HF_HUB_OFFLINE`` is set and the
    local cache lacks it; None when it loads (or may: online, the download is tried)."""
    repo = hub_repo_of(model, weights)
    if repo is None:
        return None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import is_offline_mode

    if not is_offline_mode() or isinstance(try_to_load_from_cache(repo, "model_index.json"), str):
        return None
    return f"model {model!r} loads from the Hugging Face Hub ({repo}), which is not in the local cache, and HF_HUB_OFFLINE is set"
