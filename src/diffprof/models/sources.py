"""Where a pipeline's weights come from: one entry point for every source.

``load_pipeline`` takes what a user types (a preset name, a diffusers folder, a single-file
checkpoint, a Hub id) and returns a ready pipeline plus the facts a profile must record about it:
which source, how many bytes of weights were read from disk, which files. Sources:

- ``builtin``: tiny models generated from a seed (or, later, weights shipped in the package);
- ``synthetic``: a preset's full-size architecture with random weights, built on the target device;
- ``hub``: ``from_pretrained`` of the preset's Hub repository (local cache and ``HF_HUB_OFFLINE`` honoured);
- ``local``: a diffusers folder on disk;
- ``single-file``: an original-layout ``.safetensors`` checkpoint, configured from our shipped configs.

Only ``hub`` ever contacts the Hub. Every failure a user can cause is one :class:`ModelError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from huggingface_hub.constants import is_offline_mode
from safetensors import SafetensorError, safe_open
from transformers.utils import logging as transformers_logging

from diffprof.errors import ConfigError, ModelError, unknown_choice
from diffprof.models import synthetic
from diffprof.models.ldm import CheckpointSignature, match_preset, signature_of
from diffprof.models.pipelines import (
    MODEL_COMPONENTS,
    pipeline_class,
    weightless_components,
)
from diffprof.models.presets import (
    DEFAULT_MODEL,
    PRESETS,
    Family,
    ModelPreset,
    variant_for,
)

WeightsSource = Literal["auto", "hub", "synthetic", "builtin"]
WEIGHTS_SOURCES: tuple[str, ...] = ("auto", "hub", "synthetic", "builtin")
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

_OFFER = "use --weights synthetic for the same architecture with random weights, or give a local diffusers folder or .safetensors file"


@dataclass
class LoadedPipeline:
    """A pipeline and where its weights came from.

    Attributes:
        pipeline: ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``, or the Inpaint class
            for 9-channel models (derive img2img/inpaint variants with ``AutoPipelineFor*.from_pipe``).
        family: ``sd`` or ``sdxl``.
        preset: the preset the weights belong to (``None`` for folders and Hub ids it does not name).
        source: ``hub:<id>``, ``local:<path>``, ``single-file:<path>``, ``synthetic:<preset>`` or ``builtin:<preset>``.
        bytes_read: bytes of weight files read from disk (0 when built in memory).
        files: the weight files read.
    """

    pipeline: DiffusionPipeline
    family: Family
    preset: ModelPreset | None
    source: str
    bytes_read: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def inpaint(self) -> bool:
        """The UNet is a 9-channel inpainting UNet."""
        unet: Any = getattr(self.pipeline, "unet")  # noqa: B009 - every SD/SDXL pipeline has one
        return bool(unet.config.in_channels == 9)


def load_pipeline(model: str | os.PathLike[str] = DEFAULT_MODEL, weights: str = "auto", *, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", seed: int = 0, allow_pickle: bool = False,
                  inpaint: bool | None = None) -> LoadedPipeline:
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
    """
    kind, target = resolve_source(model, weights, inpaint=inpaint)
    if kind == "preset":
        return _load_preset(target, weights, dtype=dtype, device=device, seed=seed)
    if kind == "folder":
        return _load_folder(target, f"local:{target}", inpaint=inpaint, dtype=dtype, device=device)
    if kind == "file":
        return _load_single_file(target, inpaint=inpaint, dtype=dtype, device=device, allow_pickle=allow_pickle)
    return _load_hub(target, None, inpaint=inpaint, dtype=dtype, device=device)


def resolve_source(model: str | os.PathLike[str], weights: str = "auto", *, inpaint: bool | None = None) -> tuple[str, Any]:
    """Where ``model`` would load from, without loading it: ``("preset", ModelPreset)``,
    ``("folder", Path)``, ``("file", Path)`` or ``("hub", repo id)``. Raises the error
    :func:`load_pipeline` would, so a sweep can refuse a bad model before it records a run."""
    if weights not in WEIGHTS_SOURCES:
        raise unknown_choice("weights source", weights, WEIGHTS_SOURCES, ConfigError)
    model = os.fspath(model)
    if model in PRESETS:
        preset = variant_for(PRESETS[model], inpaint)
        _check_preset_weights(preset, weights)
        return "preset", preset
    path = Path(model).expanduser()
    if path.exists():
        if weights != "auto":
            raise ModelError(f"weights={weights!r} applies to presets; a path always loads its own weights",
                             f"drop --weights, or give a preset name ({', '.join(PRESETS)})")
        return ("folder" if path.is_dir() else "file"), path
    if weights == "hub" and looks_like_repo_id(model):
        return "hub", model
    if _looks_like_path(model):
        raise ModelError(f"no such file or folder: {model!r}",
                         "give an existing diffusers folder or .safetensors file, or a preset name "
                         f"({', '.join(PRESETS)}); for a Hub repository id pass weights='hub'")
    error = unknown_choice("model", model, PRESETS, ModelError)
    raise ModelError(error.message, f"{error.hint}; or give a diffusers folder or .safetensors file")


def _check_preset_weights(preset: ModelPreset, weights: str) -> None:
    source = ("builtin" if preset.builtin else "hub") if weights == "auto" else weights
    if source == "builtin" and not preset.builtin:
        raise ModelError(f"model {preset.name!r} has no built-in weights",
                         f"use --weights synthetic (random weights, real architecture) or --weights hub; "
                         f"built-in models: {', '.join(n for n, p in PRESETS.items() if p.builtin)}")
    if source == "hub" and preset.hub_id is None:
        raise ModelError(f"model {preset.name!r} is built in and has no Hugging Face Hub repository",
                         "drop --weights hub (built-in weights are the default), or use --weights synthetic")


# ---------------------------------------------------------------------------------------------------
# Presets


def _load_preset(preset: ModelPreset, weights: str, *, dtype: torch.dtype, device: str | torch.device,
                 seed: int) -> LoadedPipeline:
    _check_preset_weights(preset, weights)
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
        pipeline = synthetic.build_pipeline(preset, device=device, dtype=dtype, seed=seed)
        return LoadedPipeline(pipeline, preset.family, preset, f"synthetic:{preset.name}")
    assert preset.hub_id is not None  # _check_preset_weights
    return _load_hub(preset.hub_id, preset, inpaint=preset.inpaint, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------------
# Hub and local folders


def _load_hub(repo_id: str, preset: ModelPreset | None, *, inpaint: bool | None, dtype: torch.dtype,
              device: str | torch.device) -> LoadedPipeline:
    cls = pipeline_class(preset.family, preset.inpaint) if preset else DiffusionPipeline
    name = f"model {preset.name!r} ({repo_id})" if preset else f"Hub repository {repo_id!r}"
    try:
        with quiet_loading():
            folder = cls.download(repo_id, **_sd_overrides(preset.family if preset else "sd"))
    except (OSError, ValueError) as error:
        if is_offline_mode():
            reason = "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        else:
            reason = f"could not be fetched from the Hugging Face Hub ({_first_line(error)})"
        offer = _OFFER if preset else "run once with network access to cache it, or give a local diffusers folder or .safetensors file"
        raise ModelError(f"{name} {reason}", offer) from None
    loaded = _load_folder(Path(folder), f"hub:{repo_id}", inpaint=inpaint, dtype=dtype, device=device)
    loaded.preset = preset
    return loaded


def _load_folder(folder: Path, source: str, *, inpaint: bool | None, dtype: torch.dtype,
                 device: str | torch.device) -> LoadedPipeline:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"{str(folder)!r} is not a diffusers pipeline folder (no model_index.json)",
                         "give a folder written by save_pretrained / diffprof materialize, or a .safetensors file")
    index = DiffusionPipeline.load_config(str(folder))
    if not all(isinstance(index.get(c), list) and index[c][0] for c in MODEL_COMPONENTS["sd"]):
        raise ModelError(f"{str(folder)!r} holds a {index.get('_class_name', 'pipeline')}, not a Stable Diffusion / SDXL pipeline",
                         "diffprof profiles SD 1.x, SD 2.x and SDXL pipelines")
    family: Family = "sdxl" if (index.get("text_encoder_2") or [None])[0] else "sd"
    try:
        unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{str(folder)!r} has no readable unet/config.json ({_first_line(error)})",
                         "the folder is incomplete: re-download or re-materialize it") from None
    model_inpaint = unet_config.get("in_channels") == 9
    _check_inpaint(str(folder), model_inpaint, inpaint)
    cls = pipeline_class(family, model_inpaint)
    try:
        with quiet_loading():
            pipeline = cls.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                           **_sd_overrides(family))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ModelError(f"could not load the pipeline in {str(folder)!r}: {_first_line(error)}",
                         "check the folder is complete (re-download or re-materialize it)") from None
    pipeline.to(torch.device(device))
    files = _weight_files(folder, index)
    return LoadedPipeline(pipeline, family, None, source, sum(f.stat().st_size for f in files), [str(f) for f in files])


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
# Single-file checkpoints


def _load_single_file(path: Path, *, inpaint: bool | None, dtype: torch.dtype, device: str | torch.device,
                      allow_pickle: bool) -> LoadedPipeline:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(f"refusing to load {path.name}: {suffix} checkpoints are Python pickles, and "
                             "unpickling a file can run any code it contains",
                             "convert it to .safetensors, or pass allow_pickle=True (--allow-pickle) if you trust its source")
        shapes = _pickle_shapes(path)
    elif suffix in SAFETENSORS_SUFFIXES:
        shapes = _safetensors_shapes(path)
    else:
        raise ModelError(f"cannot load {path.name}: unknown checkpoint format {suffix or '(no suffix)'!r}",
                         "give a .safetensors single-file checkpoint or a diffusers folder")
    signature = signature_of(shapes)
    if signature is None:
        raise ModelError(f"{path.name} is not a Stable Diffusion checkpoint in the original single-file layout "
                         "(no model.diffusion_model.* UNet weights)",
                         "for diffusers-format weights give the pipeline folder instead")
    preset = match_preset(signature)
    if preset is None:
        raise ModelError(f"{path.name} holds an architecture diffprof has no config for ({_describe(signature)})",
                         "diffprof reads SD 1.x, SD 2.x and SDXL base/inpainting single files; "
                         "other models load from a diffusers folder")
    _check_inpaint(path.name, preset.inpaint, inpaint)
    cls = pipeline_class(preset.family, preset.inpaint)
    try:
        with quiet_loading():
            pipeline = cls.from_single_file(str(path), config=str(preset.config_path), local_files_only=True,
                                            dtype=dtype, **weightless_components(preset))
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise ModelError(f"could not load {path.name} as {preset.name}: {_first_line(error)}",
                         "the file may be truncated or not a complete checkpoint; re-download or re-export it") from None
    pipeline.to(torch.device(device))
    return LoadedPipeline(pipeline, preset.family, preset, f"single-file:{path}", path.stat().st_size, [str(path)])


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the header alone (no weights read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{path.name} is not a readable .safetensors file ({_first_line(error)})",
                         "the file is corrupt or truncated: re-download or re-export it") from None


def _pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a pickled checkpoint (memory-mapped where the format allows)."""
    try:
        try:
            state: Any = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (pre-zip) format cannot be memory-mapped
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        raise ModelError(f"{path.name} could not be unpickled ({_first_line(error)})",
                         "the file is corrupt or not a PyTorch checkpoint") from None
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path.name} does not hold a state dict", "give a Stable Diffusion checkpoint")
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------------------------------------------
# Helpers


def _check_inpaint(what: str, model_inpaint: bool, wanted: bool | None) -> None:
    if wanted is None or wanted == model_inpaint:
        return
    if wanted:
        raise ModelError(f"{what} is a text-to-image model (4-channel UNet), not an inpainting model",
                         "give a 9-channel inpainting model, or drop inpaint=True (AutoPipelineForInpainting.from_pipe "
                         "also runs inpainting with a text-to-image UNet)")
    raise ModelError(f"{what} is an inpainting model (9-channel UNet) and cannot run text-to-image",
                     "drop inpaint=False, or give a text-to-image model")


def _sd_overrides(family: Family) -> dict[str, Any]:
    """SD 1.x/2.x: no safety checker (its weights are not ours to measure, and it needs a download)."""
    if family == "sdxl":
        return {}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence library warnings and per-component progress bars while loading or saving.

    A failure is reported as one ModelError line, not warnings about retries first; Hub download
    progress bars stay on (a multi-GB download needs them).
    """
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    bars = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _describe(signature: CheckpointSignature) -> str:
    return (f"{signature.family}, UNet width {signature.model_channels}, {signature.in_channels} input channels, "
            f"cross-attention {signature.context_dim}")


def looks_like_repo_id(text: str) -> bool:
    """``owner/name``: what a Hugging Face Hub repository id looks like (it may also be a relative path)."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith(".") or Path(text).suffix.lower() in (
        *SAFETENSORS_SUFFIXES, *PICKLE_SUFFIXES)
