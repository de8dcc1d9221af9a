"""What a sweep must know about its model before loading it: read from the preset or the folder's configs.

Suites lay out their cells and :func:`~diffprof.suites.checks.check_config` refuses impossible ones
before anything is measured, so they need the model's native size, the multiple its sides must be
(FLUX and SD3 16, SANA 32: pixels per transformer token), its denoiser, its scheduler kind and the
tasks its family has pipelines for. The engine finds the same facts on the loaded pipeline
(:class:`~diffprof.engine.anatomy.Anatomy`); this module reads them from config files only, so a bad
sweep costs no load. A Hub id or single file gives the defaults (``None`` where unknown): the engine
then refuses per cell, with the same messages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from diffprof.engine.schedulers import SchedulerKind, kind_of_model

#: Native size assumed for a model whose configs are not at hand (folders as before DiT support).
FALLBACK_SIZE = 512


@dataclass(frozen=True)
class ModelFacts:
    """A model's geometry and capabilities, as far as its configs tell (``None``: unknown)."""

    native_size: int = FALLBACK_SIZE
    #: Sides must be multiples of this: pixels per denoiser token, and of 8 (every size is).
    size_multiple: int = 8
    denoiser: str | None = None
    kind: SchedulerKind | None = None
    #: Tasks its family has pipelines for; ``None`` for UNet models (every task; inpainting models
    #: are checked by the engine) and unknown ones.
    tasks: tuple[str, ...] | None = None
    #: Its pipeline family (``flux``), ``generic`` for a folder no family covers, ``None`` when unknown.
    family: str | None = None

    def round_size(self, pixels: float) -> int:
        """``pixels`` to the nearest allowed side (at least one multiple, and at least 16 px)."""
        m = self.size_multiple
        return max(m, 16, round(pixels / m) * m)


@lru_cache(maxsize=32)
def model_facts(model: str) -> ModelFacts:
    """The :class:`ModelFacts` of a preset or a local diffusers folder (defaults for anything else)."""
    from diffprof.models.presets import PRESETS

    preset = PRESETS.get(model)
    kind = kind_of_model(model)
    if preset is not None:
        transformer = preset.denoiser == "transformer"
        return ModelFacts(preset.native_size, math.lcm(8, preset.token_pixels, preset.spec.size_multiple) if transformer else 8, preset.denoiser, kind,
                          preset.spec.tasks if transformer else None, preset.family)
    folder = Path(model).expanduser()
    index = _json(folder / "model_index.json")
    if index is None:
        return ModelFacts(kind=kind)
    from diffprof.models.families import CLASS_FAMILIES, FAMILIES

    denoiser = "transformer" if index.get("transformer") else "unet" if index.get("unet") else None
    spec = FAMILIES.get(CLASS_FAMILIES.get(str(index.get("_class_name")), ""))
    vae = _json(folder / "vae" / "config.json") or {}
    levels = vae.get("block_out_channels") or vae.get("encoder_block_out_channels")
    factor = 2 ** (len(levels) - 1) if levels else 8
    multiple = factor
    if denoiser == "transformer":
        config = _json(folder / "transformer" / "config.json") or {}
        multiple = math.lcm(factor * int(config.get("patch_size") or 1) * spec.packing, spec.size_multiple) if spec is not None else factor * 2
    tasks = spec.tasks if spec is not None and denoiser == "transformer" else None
    family = CLASS_FAMILIES.get(str(index.get("_class_name")), "generic")
    return ModelFacts(FALLBACK_SIZE, math.lcm(8, multiple), denoiser, kind, tasks, family)  # sizes are multiples of 8 anyway


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
