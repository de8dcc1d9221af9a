"""Write a model to disk in the two formats people load: a diffusers folder and one single file.

``materialize`` turns any model diffprof can load (a built-in or synthetic preset included) into a
plain diffusers folder, so the same weights can be loaded by anything, timed as a disk load, or
shipped to another machine. ``save_single_file`` writes the original single-file layout
(``.safetensors``), the format most community checkpoints come in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from diffprof.errors import InputError
from diffprof.models.ldm import to_ldm

#: Families whose original single-file layout diffprof writes (and diffusers' from_single_file reads).
SINGLE_FILE_FAMILIES = ("sd", "sdxl", "sd3", "flux")


def materialize(model: str, out_dir: str | os.PathLike[str], weights: str = "auto", dtype: torch.dtype = torch.float32,
                seed: int = 0, *, inpaint: bool | None = None) -> Path:
    """Write ``model`` as a diffusers folder (safetensors) at ``out_dir`` and return its path.

    ``DiffusionPipeline.from_pretrained(out_dir)`` loads it with no diffprof code; for built-in and
    synthetic presets the seed fixes the weights, so the folder reproduces the in-memory pipeline.
    """
    from diffprof.models.sources import (  # sources -> materialize is the usual direction
        load_pipeline,
        quiet_loading,
    )

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"output folder {str(out)!r} exists and is not empty",
                         "pick a new folder or empty this one; materialize never overwrites")
    pipeline: Any = load_pipeline(model, weights, dtype=dtype, seed=seed, inpaint=inpaint).pipeline
    with quiet_loading():
        pipeline.save_pretrained(out, safe_serialization=True)
    return out


def save_single_file(pipeline: Any, path: str | os.PathLike[str], *, dtype: torch.dtype | None = None) -> Path:
    """Write ``pipeline``'s weights as one original-layout ``.safetensors`` checkpoint.

    Args:
        pipeline: a diffusers SD 1.x/2.x or SDXL pipeline (txt2img, img2img or inpaint), or an SD3 / FLUX
            pipeline (written all-in-one: transformer, VAE and text encoders, as Stability's and ComfyUI's
            bundles; the SD3 layout keeps no CLIP-L text projection, see ``dit_single_file``).
        path (`str` or `PathLike`): the file to write; must end in ``.safetensors``.
        dtype (`torch.dtype`, *optional*): cast floating tensors (e.g. ``torch.float16`` halves the size).

    ``load_pipeline(path)`` and diffusers' ``from_single_file`` read it back. SD 2.x text encoders are
    written with the 23 layers diffusers uses (original files carry a 24th that SD 2 never used).
    """
    target = Path(path)
    if target.suffix != ".safetensors":
        raise InputError(f"single-file checkpoints are written as .safetensors, not {target.suffix or 'no suffix'!r}",
                         f"use a path ending in .safetensors, e.g. {target.with_suffix('.safetensors').name}")
    family = _family_of(pipeline)
    if family not in SINGLE_FILE_FAMILIES:
        raise InputError(f"{type(pipeline).__name__} has no original single-file layout diffprof writes",
                         f"single files are written for {', '.join(SINGLE_FILE_FAMILIES)}; save a diffusers folder "
                         "with materialize / save_pretrained instead")
    if family in ("sd3", "flux"):
        from diffprof.models.dit_single_file import to_original

        original = to_original(pipeline, family)
    else:
        original = to_ldm(pipeline)
    state = {}
    for key, tensor in original.items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(target), metadata={"format": "pt", "written_by": "diffprof"})
    return target


def _family_of(pipeline: Any) -> str | None:
    from diffprof.models.families import family_of_class

    if getattr(pipeline, "unet", None) is not None:
        return "sdxl" if getattr(pipeline, "text_encoder_2", None) is not None else "sd"
    return family_of_class(type(pipeline).__name__)
