"""The keyword arguments of one pipeline call, from a request and the pipeline's anatomy.

Every family's ``__call__`` takes a prompt, a step count, a guidance scale, a generator and an output
type; beyond that they differ (SD's img2img takes no size, FLUX.2 no negative prompt, PixArt needs
resolution binning off). The arguments a call needs come from the request and the family's
``call_options``; an argument the pipeline does not take is left out when it would be its default,
and refused when the user asked for it, so nothing is silently dropped.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any

from diffprof.errors import ConfigError
from diffprof.request import GenerationRequest

if TYPE_CHECKING:  # the size checks run on the refusal path, before torch loads
    import torch
    from PIL import Image


@functools.cache
def call_parameters(cls: type) -> frozenset[str]:
    """The argument names ``cls.__call__`` accepts."""
    return frozenset(inspect.signature(cls.__call__).parameters)


def call_kwargs(pipe: Any, anatomy: Any, req: GenerationRequest, *, width: int, height: int, image: Image.Image | None,
                mask: Image.Image | None, generator: torch.Generator) -> dict[str, Any]:
    """What ``pipe(**kwargs)`` gets for ``req`` (the step callback is added by the caller)."""
    accepted = call_parameters(type(pipe))
    kwargs: dict[str, Any] = dict(
        prompt=req.prompts,
        num_inference_steps=req.steps,
        guidance_scale=req.guidance,
        num_images_per_prompt=req.num_images,
        generator=generator,
        output_type="pil" if req.decode else "latent",
    )
    negative = req.negative_prompt
    if negative is not None:
        if "negative_prompt" not in accepted:
            raise ConfigError(f"{type(pipe).__name__} takes no negative prompt", "drop --negative-prompt for this model")
        kwargs["negative_prompt"] = [negative] * len(req.prompts) if isinstance(negative, str) else negative
    if req.task == "txt2img":
        kwargs.update(width=width, height=height)
    else:
        kwargs.update(image=image, strength=req.strength)
        if req.task == "inpaint":
            kwargs["mask_image"] = mask
        if "height" in accepted and (req.task == "inpaint" or anatomy.denoiser == "transformer"):
            kwargs.update(width=width, height=height)
    kwargs.update({k: v for k, v in anatomy.call_options.items() if k in accepted})
    if anatomy.guidance == "pipeline":
        kwargs.update(true_cfg_kwargs(pipe, anatomy, req, accepted))
    missing = [k for k in kwargs if k not in accepted]
    if missing:
        raise ConfigError(f"{type(pipe).__name__} does not take {', '.join(missing)}",
                          "this pipeline cannot run that request; try txt2img with its defaults")
    return kwargs


def true_cfg_kwargs(pipe: Any, anatomy: Any, req: GenerationRequest, accepted: frozenset[str]) -> dict[str, Any]:
    """The guidance arguments of a pipeline whose classifier-free guidance is ``true_cfg_scale`` (QwenImage):
    its ``guidance_scale`` defaults to ``None``, feeds only a guidance-distilled denoiser (``guidance_embeds``)
    and is ignored otherwise, and it guides only when given a negative prompt. ``--guidance`` then sets
    ``true_cfg_scale``, with an empty negative prompt above 1 unless one was given, so the guidance
    asked for is the guidance that runs; ``{}`` for every other pipeline."""
    if "true_cfg_scale" not in accepted or "negative_prompt" not in accepted or not _optional_guidance_scale(type(pipe)):
        return {}  # ChromaInpaint takes true_cfg_scale too, but guides with guidance_scale (default 7.0)
    config = getattr(getattr(pipe, anatomy.denoiser, None), "config", None)
    if config is not None and config.get("guidance_embeds"):
        return {"true_cfg_scale": 1.0}  # distilled: guidance_scale is its input, one evaluation per step
    out: dict[str, Any] = {"true_cfg_scale": max(float(req.guidance), 1.0), "guidance_scale": None}
    if req.guidance > 1 and req.negative_prompt is None:
        out["negative_prompt"] = [""] * len(req.prompts)
    return out


@functools.cache
def _optional_guidance_scale(cls: type) -> bool:
    """``cls.__call__`` takes a ``guidance_scale`` that defaults to ``None`` (an input only some checkpoints read)."""
    param = inspect.signature(cls.__call__).parameters.get("guidance_scale")
    return param is not None and param.default is None
