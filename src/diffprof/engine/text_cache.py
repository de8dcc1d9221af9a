"""Text embeddings kept for repeated prompts (the ``text_cache`` switch).

A benchmark, a server or a sweep calls a pipeline with the same prompt again and again, and every
call encodes it anew: 16.5 ms of SD 1.5's 345 ms ``fast`` call on an H200, and FLUX's T5-XXL over 512
tokens costs far more. With the cache a call's ``encode_prompt`` result is kept under everything that
decides it, and a call that asks for the same again gets it back without running a text encoder:

* the arguments ``encode_prompt`` is called with (prompts, negative prompts, images per prompt, whether
  classifier-free guidance needs the negative half, sequence lengths and the family's own options,
  ``__call__``'s defaults for the rest), built by :func:`encode_kwargs` the same way for diffprof's
  fast loop and for the pipeline's own;
* the text encoders themselves: which modules, their dtypes, and a version counter of their weights
  (``Tensor._version`` rises with every in-place change, so loading new weights into an encoder
  invalidates what it encoded; moving weights between devices, as offloading does, does not).

On the pipeline's own loop the kept embeddings go back in through the family's ``__call__`` arguments
(``prompt_embeds`` and its companions, :data:`CALL_ARGUMENTS`), already repeated per image, with
``num_images_per_prompt=1``: the same arithmetic as the pipeline's own encoding (tested bit for bit per
family). A pipeline no family covers is encoded every call, and the result says so.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

#: What each family's ``encode_prompt`` returns, in order, as the ``__call__`` argument that takes it
#: back (``None``: not a call argument; FLUX recomputes its text ids).
CALL_ARGUMENTS: dict[str, tuple[str | None, ...]] = {
    "sd": ("prompt_embeds", "negative_prompt_embeds"),
    "sdxl": ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"),
    "sd3": ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"),
    "flux": ("prompt_embeds", "pooled_prompt_embeds", None),
    "pixart": ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask"),
    "sana": ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask"),
}
#: ``encode_prompt`` parameters diffprof sets itself or that carry tensors, not settings.
_OWN = frozenset({"self", "device", "num_images_per_prompt", "do_classifier_free_guidance", "lora_scale", "kwargs"})
#: Cached results kept at most (least recently used goes first).
SIZE = 8


def cfg_of(pipe: Any, guidance: float) -> bool:
    """Whether the pipeline runs classifier-free guidance at ``guidance`` (and so encodes a negative
    prompt): above 1, except for a UNet distilled for guidance (LCM's ``time_cond_proj_dim``)."""
    unet = getattr(pipe, "unet", None)
    return guidance > 1 and (unet is None or getattr(unet.config, "time_cond_proj_dim", None) is None)


def encode_kwargs(pipe: Any, call: Mapping[str, Any], cfg: bool, device: torch.device) -> dict[str, Any]:
    """The arguments the pipeline's ``__call__`` would pass ``encode_prompt`` for the call ``call``:
    what the call gives (prompt, negative prompt, images per prompt, sequence length, caption
    cleaning), ``__call__``'s own defaults for the rest (SANA's instruction, clip skip), no tensors."""
    encode = inspect.signature(pipe.encode_prompt).parameters
    defaults = inspect.signature(type(pipe).__call__).parameters
    out: dict[str, Any] = {}
    for name in encode:
        if name in _OWN or name.endswith(("_embeds", "_mask")):
            continue
        if name in call:
            out[name] = call[name]
        elif name in defaults and defaults[name].default is not inspect.Parameter.empty:
            out[name] = defaults[name].default
    out.update(device=device, num_images_per_prompt=call.get("num_images_per_prompt", 1))
    if "do_classifier_free_guidance" in encode:
        out["do_classifier_free_guidance"] = cfg
    return out


def call_arguments(family: str, outputs: tuple[Any, ...]) -> dict[str, Any] | None:
    """``encode_prompt``'s ``outputs`` as the family's ``__call__`` arguments (``None`` when no family
    entry says which output is which)."""
    names = CALL_ARGUMENTS.get(family)
    if names is None or len(names) != len(outputs):
        return None
    return {name: value for name, value in zip(names, outputs) if name is not None and value is not None}


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, torch.device):
        return str(value)
    return value


class TextCache:
    """``encode_prompt`` results by everything that decides them; see the module docstring."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
        #: Calls answered from the cache, and calls that encoded.
        self.hits = 0
        self.misses = 0

    @staticmethod
    def encoders_state(pipe: Any) -> tuple[Any, ...]:
        """Which text encoders a pipeline has, their dtypes and their weights' version counters."""
        state = []
        for name, module in sorted((getattr(pipe, "components", None) or {}).items()):
            if name.startswith("text_encoder") and isinstance(module, torch.nn.Module):
                params = list(module.parameters())
                state.append((name, id(module), str(params[0].dtype) if params else "", sum(p._version for p in params)))
        return tuple(state)

    def key(self, pipe: Any, kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        return (type(pipe).__name__, tuple(sorted((k, _frozen(v)) for k, v in kwargs.items())), self.encoders_state(pipe))

    def encode(self, pipe: Any, kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], bool]:
        """``pipe.encode_prompt(**kwargs)``, from the cache when the same was encoded before; and
        whether it was."""
        key = self.key(pipe, kwargs)
        if key in self._kept:
            self._kept.move_to_end(key)
            self.hits += 1
            return self._kept[key], True
        outputs = tuple(pipe.encode_prompt(**kwargs))
        self.misses += 1
        self._kept[key] = outputs
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return outputs, False

    def call_kwargs(self, pipe: Any, family: str, kwargs: dict[str, Any], guidance: float) -> tuple[dict[str, Any], str]:
        """The pipeline call ``kwargs`` with the prompts replaced by their embeddings (from the cache,
        or encoded now, inside the caller's instrumented call), and what happened (``cached``,
        ``encoded``, or why the pipeline encodes them itself)."""
        names = CALL_ARGUMENTS.get(family)
        if names is None:
            return kwargs, f"encoded (text_cache does not know what {type(pipe).__name__}.encode_prompt returns)"
        encode = encode_kwargs(pipe, kwargs, cfg_of(pipe, guidance), getattr(pipe, "_execution_device", None))
        outputs, hit = self.encode(pipe, encode)
        embeds = call_arguments(family, outputs) or {}
        # what the embeddings stand for goes as None (diffusers refuses a prompt and its embeddings together,
        # and PixArt's and SANA's negative prompt defaults to "")
        consumed = ("prompt", "negative_prompt") if "negative_prompt_embeds" in names else ("prompt",)
        accepted = inspect.signature(type(pipe).__call__).parameters
        cleared = {k: None for k in consumed if k in accepted}
        return {**kwargs, **cleared, **embeds, "num_images_per_prompt": 1}, "cached" if hit else "encoded"

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)
