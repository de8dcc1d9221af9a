"""Single-file checkpoints: SD 1.x/2.x and SDXL (the LDM layout), SD3 and FLUX (all-in-one files).

The file's tensor names and shapes (read from the header, no weights) say which preset it holds;
diffusers' ``from_single_file`` then reads it with that preset's shipped configs, so no download.
Pickled checkpoints (``.ckpt`` ...) load only when asked: unpickling can run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from diffprof.errors import ModelError
from diffprof.models import dit_single_file
from diffprof.models.ldm import CheckpointSignature, match_preset, signature_of
from diffprof.models.loaded import LoadedPipeline, check_inpaint, first_line, quiet_loading
from diffprof.models.pipelines import pipeline_class, weightless_components
from diffprof.models.presets import PRESETS, ModelPreset
from diffprof.models.resolve import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES



def load_single_file(path: Path, *, inpaint: bool | None, dtype: torch.dtype, device: str | torch.device,
                     allow_pickle: bool) -> LoadedPipeline:
    """``path`` as a pipeline of the preset whose architecture its tensors have."""
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
    family, dit = dit_single_file.match_preset(shapes)
    if family is not None:
        return _load_dit_file(path, family, dit, shapes, inpaint=inpaint, dtype=dtype, device=device)
    signature = signature_of(shapes)
    if signature is None:
        raise ModelError(f"{path.name} is not a Stable Diffusion checkpoint in the original single-file layout "
                         "(no model.diffusion_model.* UNet, SD3 MMDiT or FLUX transformer weights)",
                         "for diffusers-format weights give the pipeline folder instead")
    preset = match_preset(signature)
    if preset is None:
        raise ModelError(f"{path.name} holds an architecture diffprof has no config for ({_describe(signature)})",
                         "diffprof reads SD 1.x, SD 2.x and SDXL base/inpainting single files; "
                         "other models load from a diffusers folder")
    check_inpaint(path.name, preset.inpaint, inpaint)
    cls = pipeline_class(preset.family, preset.inpaint)
    try:
        with quiet_loading():
            pipeline = cls.from_single_file(str(path), config=str(preset.config_path), local_files_only=True,
                                            dtype=dtype, **weightless_components(preset))
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise ModelError(f"could not load {path.name} as {preset.name}: {first_line(error)}",
                         "the file may be truncated or not a complete checkpoint; re-download or re-export it") from None
    pipeline.to(torch.device(device))
    return LoadedPipeline(pipeline, preset.family, preset, f"single-file:{path}", path.stat().st_size, [str(path)])


def _load_dit_file(path: Path, family: str, preset: ModelPreset | None, shapes: dict[str, tuple[int, ...]], *,
                   inpaint: bool | None, dtype: torch.dtype, device: str | torch.device) -> LoadedPipeline:
    """An SD3 / FLUX all-in-one file through diffusers' ``from_single_file`` and the preset's shipped configs."""
    if preset is None:
        raise ModelError(f"{path.name} holds a {family} transformer of an architecture diffprof has no config for",
                         f"{family} presets: {', '.join(n for n, p in PRESETS.items() if p.family == family)}; "
                         "other models load from a diffusers folder")
    limit = dit_single_file.unsupported(shapes)
    if limit:
        raise ModelError(f"{path.name} holds a {preset.name}-shaped transformer that diffusers cannot read from one file: {limit}",
                         "save it as a diffusers folder (materialize / save_pretrained) and load the folder")
    missing = dit_single_file.missing_parts(shapes, family)
    if missing:
        raise ModelError(f"{path.name} holds the {preset.name} transformer but not its {', '.join(missing)}: a single "
                         "file must carry the whole pipeline (an all-in-one checkpoint)",
                         "give a diffusers folder of the model, or an all-in-one file (ComfyUI's / Stability's bundles)")
    check_inpaint(path.name, False, inpaint)
    parts = {k: v for k, v in weightless_components(preset).items() if k.startswith(("tokenizer", "scheduler"))}
    try:
        with quiet_loading():
            pipeline = dit_single_file.load(path, preset, parts, dtype)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise ModelError(f"could not load {path.name} as {preset.name}: {first_line(error)}",
                         "the file may be truncated or not a complete checkpoint; re-download or re-export it") from None
    pipeline.to(torch.device(device))
    return LoadedPipeline(pipeline, preset.family, preset, f"single-file:{path}", path.stat().st_size, [str(path)])


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the header alone (no weights read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{path.name} is not a readable .safetensors file ({first_line(error)})",
                         "the file is corrupt or truncated: re-download or re-export it") from None


def _pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a pickled checkpoint (memory-mapped where the format allows)."""
    try:
        try:
            state: Any = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (pre-zip) format cannot be memory-mapped
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        raise ModelError(f"{path.name} could not be unpickled ({first_line(error)})",
                         "the file is corrupt or not a PyTorch checkpoint") from None
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path.name} does not hold a state dict", "give a Stable Diffusion checkpoint")
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _describe(signature: CheckpointSignature) -> str:
    return (f"{signature.family}, UNet width {signature.model_channels}, {signature.in_channels} input channels, "
            f"cross-attention {signature.context_dim}")
