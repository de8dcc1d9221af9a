"""What a pipeline is made of, apart from its weights.

Every weight source (built-in, synthetic, single file) ends the same way: take the weighted models
(UNet, VAE, text encoders), add the parts that carry no weights (the real CLIP tokenizers, the
preset's scheduler, no safety checker) and instantiate the right diffusers class for the family and
task. Keeping that in one place means every source yields pipelines that differ only in weights.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import diffusers
from diffusers import (
    DiffusionPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from diffprof.models.presets import Family, ModelPreset
from diffprof.models.tokenizer import clip_tokenizer

#: The pipeline class per (family, inpaint): txt2img classes for 4-channel UNets, Inpaint for 9-channel.
PIPELINE_CLASSES: dict[tuple[Family, bool], type] = {
    ("sd", False): StableDiffusionPipeline,
    ("sd", True): StableDiffusionInpaintPipeline,
    ("sdxl", False): StableDiffusionXLPipeline,
    ("sdxl", True): StableDiffusionXLInpaintPipeline,
}

#: Components that hold weights, per family (what weight sources must provide).
MODEL_COMPONENTS: dict[Family, tuple[str, ...]] = {
    "sd": ("unet", "vae", "text_encoder"),
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2"),
}


def pipeline_class(family: Family, inpaint: bool) -> Any:
    """The diffusers class that runs a ``family`` model with a 9-channel (``inpaint``) or 4-channel UNet."""
    return PIPELINE_CLASSES[(family, inpaint)]


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
    """Tokenizers (real CLIP vocabulary, the preset's pad tokens), scheduler and pipeline options.

    Pipeline options come from ``model_index.json`` (``force_zeros_for_empty_prompt``,
    ``requires_aesthetics_score`` ...); the SD family gets no safety checker, as it would need weights
    we cannot download and it is not part of what diffprof measures.
    """
    parts: dict[str, Any] = {"scheduler": scheduler_for(preset), "tokenizer": clip_tokenizer(preset.pad_token("tokenizer"))}
    if preset.family == "sdxl":
        parts["tokenizer_2"] = clip_tokenizer(preset.pad_token("tokenizer_2"))
    else:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
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
