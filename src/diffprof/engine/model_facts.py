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

from diffprof.engine.schedulers import SchedulerKind, check_applies, check_scheduler, kind_of_model
from diffprof.errors import ConfigError, unknown_choice

#: Native size assumed for a model whose configs are not at hand, or whose denoiser config names no sample size.
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
    #: An inpainting model (a 9-channel UNet): it runs ``inpaint`` only.
    inpaint: bool = False

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
                          preset.spec.tasks if transformer else None, preset.family, inpaint=bool(preset.inpaint))
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
    config = (_json(folder / denoiser / "config.json") or {}) if denoiser else {}
    sample = config.get("sample_size")
    sample = sample[0] if isinstance(sample, (list, tuple)) and sample else sample
    # the denoiser's latent side x the VAE factor, as the engine and the estimator read it (an SDXL folder: 1024)
    native = int(sample) * factor if isinstance(sample, int) and not isinstance(sample, bool) and sample > 0 else FALLBACK_SIZE
    if denoiser == "transformer":
        multiple = math.lcm(factor * int(config.get("patch_size") or 1) * spec.packing, spec.size_multiple) if spec is not None else factor * 2
    tasks = spec.tasks if spec is not None and denoiser == "transformer" else None
    family = CLASS_FAMILIES.get(str(index.get("_class_name")), "generic")
    inpaint = denoiser == "unet" and int((_json(folder / "unet" / "config.json") or {}).get("in_channels") or 4) == 9
    return ModelFacts(native, math.lcm(8, multiple), denoiser, kind, tasks, family, inpaint)  # sizes are multiples of 8 anyway


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_multiple(width: int | None, height: int | None, multiple: int, model: str, denoiser: str | None) -> None:
    """Refuse sizes the denoiser cannot tile into tokens (FLUX and SD3: multiples of 16, SANA 32).

    Pipelines would otherwise resize the request with a warning (FLUX) or fail deep inside the
    transformer, and the profile would report a size that did not run. ``None`` sides are not checked."""
    m = int(multiple)
    bad = [f"{name} {value}" for name, value in (("width", width), ("height", height)) if value is not None and value % m]
    if bad:
        why = ("a diffusion transformer tiles the image into tokens of VAE factor x patch x packing pixels a side, "
               "and its pipeline checks the sides" if denoiser == "transformer" else f"its VAE downsamples by {m}")
        w, h = width or m, height or m
        raise ConfigError(f"{' and '.join(bad)} must be a multiple of {m} for {model}: {why}",
                          f"use e.g. {max(m, round(w / m) * m)}x{max(m, round(h / m) * m)}")


def check_request(model: str, facts: ModelFacts, scheduler: str, task: str | None, strength: float | None) -> tuple[str, float]:
    """``(task, strength)`` for an estimate of ``model`` (``task`` None: what the model runs;
    ``strength`` None: ``generate``'s default for img2img/inpaint, 1 for txt2img), checked from its
    configs before anything loads (``diffprof estimate --scheduler/--task/--strength``).

    Raises:
        ConfigError: an unknown scheduler or task, a scheduler of the other kind (a noise-schedule
            solver on a flow-matching model), a task the model has no pipeline for (an inpainting
            model runs only ``inpaint``), or a strength outside (0, 1] or given to txt2img.
    """
    if task is None:
        task = "inpaint" if facts.inpaint else "txt2img"
    from diffprof.config.values import TASKS

    if task not in TASKS:
        raise unknown_choice("task", task, TASKS)
    if facts.inpaint and task != "inpaint":
        raise ConfigError(f"{model} is an inpainting model (9-channel UNet); it only runs --task inpaint",
                          "estimate --task inpaint with it, or estimate a text-to-image model (e.g. tiny-sd, sd15) for txt2img and img2img")
    if facts.tasks is not None and task not in facts.tasks:
        raise ConfigError(f"{model} has no {task} pipeline (its family runs {', '.join(facts.tasks)})", f"use --task {facts.tasks[0]}")
    check_scheduler(scheduler)
    if facts.kind is not None:
        check_applies(scheduler, facts.kind, model, task)
    if task == "txt2img":
        if strength is not None and strength != 1:
            raise ConfigError(f"--strength {strength:g} applies to img2img and inpaint, and this estimate is txt2img",
                              "add --task img2img (or inpaint), or drop --strength")
        return task, 1.0
    from diffprof.config import RunConfig
    from diffprof.config.spec import check_value

    value = RunConfig.default_of("strength") if strength is None else strength
    check_value(RunConfig.spec("strength"), value)
    return task, float(value)
