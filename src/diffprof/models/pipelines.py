"""What a pipeline is made of, apart from its weights.

Every weight source (built-in, synthetic, single file) ends the same way: take the weighted models
(denoiser, VAE, text encoders), add the parts that carry no weights (tokenizers: the real CLIP
vocabulary, stand-ins for T5 and Gemma; the preset's scheduler; no safety checker) and instantiate
the right diffusers class for the family and task. Keeping that in one place means every source
yields pipelines that differ only in weights. Which class and which components come from the family
registry (``families.py``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import diffusers
from diffusers import (
    DiffusionPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from diffprof.models.families import FAMILIES, get_family
from diffprof.models.presets import ModelPreset
from diffprof.models.tokenizer import text_tokenizer

#: UNet families: the class for a 9-channel (inpainting) UNet; every other (family, task) is in the registry.
NINE_CHANNEL_CLASSES: dict[str, type] = {"sd": StableDiffusionInpaintPipeline, "sdxl": StableDiffusionXLInpaintPipeline}

#: Components that hold weights, per family (what weight sources must provide).
MODEL_COMPONENTS: dict[str, tuple[str, ...]] = {name: spec.components for name, spec in FAMILIES.items()}


def pipeline_class(family: str, inpaint: bool = False, task: str = "txt2img") -> Any:
    """The diffusers class that runs ``task`` on a ``family`` model.

    ``inpaint`` asks for the class of a 9-channel inpainting UNet (SD, SDXL), whatever the task: such a
    UNet only inpaints. Transformer families inpaint with their text-to-image denoiser (``task``).
    """
    if inpaint:
        if family not in NINE_CHANNEL_CLASSES:
            raise ValueError(f"the {family} family has no 9-channel inpainting models")
        return NINE_CHANNEL_CLASSES[family]
    return getattr(diffusers, get_family(family).pipeline_class_name(task))


def for_task(pipeline: Any, family: str, task: str) -> Any:
    """``pipeline``'s modules under the family's class for ``task`` (``from_pipe``: no weights copied).

    E.g. ``FluxImg2ImgPipeline`` / ``FluxInpaintPipeline`` from a ``FluxPipeline``. A :class:`ModelError`
    when diffusers has no pipeline for the task in that family (PixArt and SANA are text-to-image only).
    """
    cls = pipeline_class(family, task=task)
    return pipeline if type(pipeline) is cls else cls.from_pipe(pipeline)


def component_class(preset: ModelPreset, component: str) -> type:
    """The class ``model_index.json`` names for ``component`` (e.g. ``diffusers.UNet2DConditionModel``)."""
    library, class_name = preset.model_index()[component]
    return getattr(importlib.import_module(library), class_name)  # type: ignore[no-any-return]


def init_kwargs(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without keys ``cls`` does not take (e.g. EMA training state in sdxl-inpaint's UNet config).

    Real config files carry such keys; diffusers ignores them but warns on every build.
    """
    accepted = inspect.signature(cls).parameters
    return {key: value for key, value in config.items() if key in accepted or key.startswith("_")}


def scheduler_for(preset: ModelPreset) -> SchedulerMixin:
    """The scheduler the preset's repository ships (class and config)."""
    _, class_name = preset.model_index()["scheduler"]
    cls = getattr(diffusers, class_name)
    scheduler: SchedulerMixin = cls.from_config(preset.component_config("scheduler"))
    return scheduler


def weightless_components(preset: ModelPreset) -> dict[str, Any]:
    """Tokenizers, scheduler and pipeline options.

    Tokenizers: the real CLIP vocabulary with the preset's pad tokens; T5 and Gemma stand-ins (their
    vocabularies are not to be had offline; :mod:`diffprof.models.stand_ins`). Pipeline options come
    from the family (the SD family gets no safety checker: its weights cannot be downloaded and it is
    not part of what diffprof measures) and from ``model_index.json`` (``force_zeros_for_empty_prompt``,
    ``requires_aesthetics_score`` ...).
    """
    spec = preset.spec
    parts: dict[str, Any] = {"scheduler": scheduler_for(preset)}
    for encoder in spec.text_encoders:
        parts[encoder.tokenizer] = text_tokenizer(encoder.kind, preset.pad_token(encoder.tokenizer))
    parts.update(spec.pipeline_options)
    cls = pipeline_class(preset.family, preset.inpaint)
    accepted = inspect.signature(cls).parameters
    options = {k: v for k, v in preset.model_index().items() if not k.startswith("_") and not isinstance(v, list)}
    parts.update({k: v for k, v in options.items() if k in accepted and k not in parts})
    return parts


def assemble(preset: ModelPreset, models: dict[str, Any]) -> DiffusionPipeline:
    """A ready pipeline of the preset's class from its weighted ``models`` plus the weightless parts."""
    missing = set(MODEL_COMPONENTS[preset.family]) - set(models)
    if missing:
        raise ValueError(f"{preset.name}: missing model components {sorted(missing)}")
    cls = pipeline_class(preset.family, preset.inpaint)
    pipeline: DiffusionPipeline = cls(**models, **weightless_components(preset))
    return pipeline
