"""The img2img and inpaint pipelines of a pipeline no family covers, from diffusers' own public names.

diffusers' ``AutoPipelineForImage2Image`` / ``AutoPipelineForInpainting`` map a text-to-image class to
its task variants, but not every family is in those tables (``ChromaImg2ImgPipeline`` and
``ChromaInpaintPipeline`` exist; the mapping has no ``chroma``). So the AutoPipeline comes first, then
diffusers' naming convention (``XPipeline`` -> ``XImg2ImgPipeline`` / ``XInpaintPipeline``), kept only
when its ``__call__`` takes what the task passes (an ``image`` and a ``strength``; inpaint a
``mask_image``). With neither, the task is refused saying so.
"""

from __future__ import annotations

import inspect
from typing import Any

from diffprof.errors import ConfigError

#: What a task's pipeline must take beyond the text-to-image arguments.
TASK_ARGUMENTS = {"img2img": ("image", "strength"), "inpaint": ("image", "strength", "mask_image")}
#: The class-name infix of each task in diffusers.
TASK_INFIX = {"img2img": "Img2Img", "inpaint": "Inpaint"}


def named_task_class(base_class: str, task: str) -> Any:
    """diffusers' ``<X>Img2ImgPipeline`` / ``<X>InpaintPipeline`` for ``<X>Pipeline`` when it exists and its
    ``__call__`` takes the task's arguments, else ``None``."""
    import diffusers

    if not base_class.endswith("Pipeline"):
        return None
    name = f"{base_class[:-len('Pipeline')]}{TASK_INFIX[task]}Pipeline"
    try:
        cls = getattr(diffusers, name)
    except (AttributeError, ImportError):  # not in diffusers, or its optional dependency is missing
        return None
    params = inspect.signature(cls.__call__).parameters
    return cls if all(p in params for p in TASK_ARGUMENTS[task]) else None


def generic_task_pipeline(base: Any, task: str) -> Any:
    """``base``'s modules under diffusers' pipeline for ``task`` (``from_pipe``: no weights copied); a
    :class:`ConfigError` when diffusers has none."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    name = type(base).__name__
    auto = AutoPipelineForImage2Image if task == "img2img" else AutoPipelineForInpainting
    reason = ""
    try:
        pipe = auto.from_pipe(base)
        if type(pipe) is not type(base):  # AutoPipeline falls back to the text-to-image class itself (FLUX.2)
            return pipe
    except (ValueError, KeyError, AttributeError) as exc:
        reason = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    cls = named_task_class(name, task)
    if cls is None:
        raise ConfigError(f"diffusers has no {task} pipeline for {name}", f"run --task txt2img on this model{reason}")
    return cls.from_pipe(base)
