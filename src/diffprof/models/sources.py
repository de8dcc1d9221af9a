"""Where a pipeline's weights come from: one entry point for every source.

``load_pipeline`` takes what a user types (a preset name, a diffusers folder, a single-file
checkpoint, a Hub id) and returns a ready pipeline plus the facts a profile must record about it:
which source, how many bytes of weights were read from disk, which files. Sources:

- ``builtin``: tiny models generated from a seed (or, later, weights shipped in the package);
- ``synthetic``: a preset's full-size architecture with random weights, built on the target device;
- ``hub``: ``from_pretrained`` of the preset's Hub repository (local cache and ``HF_HUB_OFFLINE`` honoured);
- ``local``: a diffusers folder on disk, of any ``DiffusionPipeline`` class (families the registry does
  not know load as ``generic``);
- ``single-file``: an original-layout ``.safetensors`` checkpoint (SD 1.x/2.x, SDXL, SD3, FLUX),
  configured from our shipped configs.

Only ``hub`` ever contacts the Hub. Every failure a user can cause is one :class:`ModelError`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
from diffusers import DiffusionPipeline
from huggingface_hub.constants import is_offline_mode
from safetensors import SafetensorError

from diffprof.errors import ModelError
from diffprof.models import synthetic
from diffprof.models.families import FAMILIES, family_of_class
from diffprof.models.loaded import LoadedPipeline, check_inpaint, first_line, quiet_loading
from diffprof.models.pipelines import MODEL_COMPONENTS, pipeline_class
from diffprof.models.presets import DEFAULT_MODEL, ModelPreset
from diffprof.models.resolve import (
    WEIGHTS_SOURCES,
    check_preset_weights,
    current_repo,
    looks_like_repo_id,
    moved_note,
    preset_of_repo,
    resolve_source,
)
from diffprof.models.single_file import load_single_file

__all__ = ["GENERIC", "WEIGHTS_SOURCES", "LoadedPipeline", "load_pipeline", "looks_like_repo_id", "quiet_loading",
           "resolve_source"]

#: ``LoadedPipeline.family`` of a folder or Hub pipeline whose class no registered family covers.
GENERIC = "generic"

WeightsSource = Literal["auto", "hub", "synthetic", "builtin"]



def load_pipeline(model: str | os.PathLike[str] = DEFAULT_MODEL, weights: str = "auto", *, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", seed: int = 0, allow_pickle: bool = False,
                  inpaint: bool | None = None, generate_on: str | torch.device | None = None) -> LoadedPipeline:
    """Load ``model`` with weights from ``weights`` onto ``device``.

    Args:
        model (`str`): a preset name (``sd15``, ``sdxl``, ``tiny-sd`` ...), a diffusers folder, a
            single-file checkpoint (``.safetensors``; pickles only with ``allow_pickle``), or, with
            ``weights="hub"``, a Hub repository id. Preset names win over same-named relative
            paths (write ``./sd15`` for the folder).
        weights (`str`, defaults to ``"auto"``): ``auto`` (built-in presets: ``builtin``; others:
            ``hub``), ``hub``, ``synthetic`` (the real architecture, random weights) or ``builtin``.
            Paths always load their own weights (``auto``).
        dtype (`torch.dtype`, defaults to ``torch.float32``): weight dtype.
        device (`str` or `torch.device`, defaults to ``"cpu"``): where the pipeline runs.
        seed (`int`, defaults to 0): fixes random weights (``builtin`` without shipped weights, ``synthetic``).
        allow_pickle (`bool`, defaults to `False`): load ``.ckpt``/``.pt``/``.bin`` files; unpickling can run code.
        inpaint (`bool`, *optional*): ``True`` asks for a 9-channel inpainting model (a preset's
            inpainting sibling); ``False`` for a text-to-image one; ``None`` takes the model as it is.
        generate_on (`str` or `torch.device`, *optional*): where ``synthetic`` weights are drawn when
            they are to live elsewhere (an offloaded engine keeps them in host memory but draws them
            on its GPU, so they equal a resident engine's of the same seed).
    """
    kind, target = resolve_source(model, weights, inpaint=inpaint)
    if kind == "preset":
        return _load_preset(target, weights, dtype=dtype, device=device, seed=seed, generate_on=generate_on)
    if kind == "folder":
        return _load_folder(target, f"local:{target}", inpaint=inpaint, dtype=dtype, device=device)
    if kind == "file":
        return load_single_file(target, inpaint=inpaint, dtype=dtype, device=device, allow_pickle=allow_pickle)
    return _load_hub(target, None, inpaint=inpaint, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------------
# Presets


def _load_preset(preset: ModelPreset, weights: str, *, dtype: torch.dtype, device: str | torch.device,
                 seed: int, generate_on: str | torch.device | None = None) -> LoadedPipeline:
    check_preset_weights(preset, weights)
    source = ("builtin" if preset.builtin else "hub") if weights == "auto" else weights
    if source == "builtin":
        if preset.weights_path is not None:
            loaded = _load_folder(preset.weights_path, f"builtin:{preset.name}", inpaint=preset.inpaint,
                                  dtype=dtype, device=device)
            loaded.preset = preset
            return loaded
        # Generated on CPU in float32, then moved: the same seed gives the same weights on every device.
        pipeline = synthetic.build_pipeline(preset, device=device, dtype=dtype, seed=seed, portable=True)
        return LoadedPipeline(pipeline, preset.family, preset, f"builtin:{preset.name}")
    if source == "synthetic":
        pipeline = synthetic.build_pipeline(preset, device=device, dtype=dtype, seed=seed, generate_on=generate_on)
        return LoadedPipeline(pipeline, preset.family, preset, f"synthetic:{preset.name}")
    assert preset.hub_id is not None  # check_preset_weights
    return _load_hub(preset.hub_id, preset, inpaint=preset.inpaint, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------------
# Hub and local folders


def _load_hub(repo_id: str, preset: ModelPreset | None, *, inpaint: bool | None, dtype: torch.dtype,
              device: str | torch.device) -> LoadedPipeline:
    cls = pipeline_class(preset.family, preset.inpaint) if preset else DiffusionPipeline
    asked, repo_id = repo_id, current_repo(repo_id)  # a moved repository loads from where it is now
    name = (f"model {preset.name!r} ({repo_id})" if preset else f"Hub repository {repo_id!r}") + moved_note(asked)
    try:
        with quiet_loading():
            folder = cls.download(repo_id, **_overrides(preset.family if preset else "sd"))
    except (OSError, ValueError) as error:
        if is_offline_mode():
            reason = "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        else:
            reason = f"could not be fetched from the Hugging Face Hub ({first_line(error)})"
        known = preset or preset_of_repo(repo_id)
        if known is not None:
            offer = (f"use --model {known.name} --weights synthetic for the same architecture with random weights (no download), "
                     "or give a local diffusers folder or .safetensors file")
        else:
            offer = "run once with network access to cache it, or give a local diffusers folder or .safetensors file"
        raise ModelError(f"{name} {reason}", offer) from None
    loaded = _load_folder(Path(folder), f"hub:{repo_id}" + (f" (moved from {asked})" if asked != repo_id else ""), inpaint=inpaint,
                          dtype=dtype, device=device)
    loaded.preset = preset
    return loaded


def _load_folder(folder: Path, source: str, *, inpaint: bool | None, dtype: torch.dtype,
                 device: str | torch.device) -> LoadedPipeline:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"{str(folder)!r} is not a diffusers pipeline folder (no model_index.json)",
                         "give a folder written by save_pretrained / diffprof materialize, or a .safetensors file")
    index = DiffusionPipeline.load_config(str(folder))
    if all(isinstance(index.get(c), list) and index[c][0] for c in MODEL_COMPONENTS["sd"]):
        family, cls, overrides = _unet_folder(folder, index, inpaint)
    else:
        family, cls = _pipeline_folder(folder, index, inpaint)
        overrides = _overrides(family)
    try:
        with quiet_loading():
            pipeline = cls.from_pretrained(str(folder), dtype=dtype, local_files_only=True, **overrides)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ModelError(f"could not load the pipeline in {str(folder)!r}: {first_line(error)}",
                         "check the folder is complete (re-download or re-materialize it)") from None
    pipeline.to(torch.device(device))
    files = _weight_files(folder, index)
    return LoadedPipeline(pipeline, family, None, source, sum(f.stat().st_size for f in files), [str(f) for f in files])


def _unet_folder(folder: Path, index: dict[str, Any], inpaint: bool | None) -> tuple[str, Any, dict[str, Any]]:
    """SD 1.x/2.x and SDXL folders (a UNet, a VAE and CLIP): family and class from the UNet's inputs."""
    family = "sdxl" if (index.get("text_encoder_2") or [None])[0] else "sd"
    try:
        unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{str(folder)!r} has no readable unet/config.json ({first_line(error)})",
                         "the folder is incomplete: re-download or re-materialize it") from None
    model_inpaint = unet_config.get("in_channels") == 9
    check_inpaint(str(folder), model_inpaint, inpaint)
    return family, pipeline_class(family, model_inpaint), _overrides(family)


def _pipeline_folder(folder: Path, index: dict[str, Any], inpaint: bool | None) -> tuple[str, Any]:
    """Any other pipeline folder: the class it names, the family that class belongs to (or ``generic``)."""
    class_name = str(index.get("_class_name", ""))
    cls = getattr(diffusers, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, DiffusionPipeline)):
        raise ModelError(f"{str(folder)!r} holds a {class_name or 'pipeline with no _class_name'}, which diffusers "
                         f"{diffusers.__version__} does not have",
                         "upgrade diffusers for newer pipelines; custom (community) pipelines are not loaded")
    check_inpaint(str(folder), False, inpaint)
    return family_of_class(class_name) or GENERIC, cls


_WEIGHT_FILE = re.compile(r"(diffusion_pytorch_model|model)(-\d{5}-of-\d{5})?\.(safetensors|bin)")


def _weight_files(folder: Path, index: dict[str, Any]) -> list[Path]:
    """The weight files ``from_pretrained`` reads: per component, safetensors (no variant) else pickles."""
    files: list[Path] = []
    for component, entry in sorted(index.items()):
        if component.startswith("_") or not isinstance(entry, list) or not entry[0] or not (folder / component).is_dir():
            continue
        candidates = [p for p in sorted((folder / component).iterdir()) if _WEIGHT_FILE.fullmatch(p.name)]
        safetensors = [p for p in candidates if p.suffix == ".safetensors"]
        files.extend(safetensors or candidates)
    return files


# ---------------------------------------------------------------------------------------------------
# Helpers


def _overrides(family: str) -> dict[str, Any]:
    """Constructor arguments the family's pipelines get (SD 1.x/2.x: no safety checker, whose weights are
    not ours to measure and need a download)."""
    spec = FAMILIES.get(family)
    return dict(spec.pipeline_options) if spec is not None else {}
