"""FLOPs of what one call ran, from the input shapes its forwards recorded.

The engine's hooks keep the signature (tensor shapes and dtypes, other values as they were) of every
text-encoder and VAE forward of a call and of its first denoiser evaluations
(:class:`~diffprof.engine.instrument.CallInputs`). Replaying those on copies of the modules with no
storage counts exactly what ran, for any pipeline: QwenImage's and FLUX.2's transformers, a CFG
pipeline that runs its two halves as separate calls, an encoder fed a chat template.

Copies live on the meta device. A module that reads its inputs' values (transformers' encoders test
``attention_mask.all()`` to skip the mask) cannot run there; it is replayed under ``FakeTensorMode``
instead, whose tensors carry no data either but which those libraries recognize and let pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_map

from diffprof.flops import meta_copy

Signature = tuple[tuple[Any, ...], dict[str, Any]]


def _inputs(signature: Signature, device: torch.device | None) -> Signature:
    from diffprof.engine.instrument import TensorShape

    def build(x: Any) -> Any:
        return torch.zeros(x.shape, dtype=x.dtype, device=device) if isinstance(x, TensorShape) else x

    args, kwargs = tree_map(build, signature, is_leaf=lambda x: isinstance(x, TensorShape))
    return tuple(args), dict(kwargs)


def _count(module: Any, part: Callable[[Any], Any], signatures: list[Signature], count: Callable[..., int]) -> list[int]:
    """FLOPs of each recorded forward of ``part(module)`` (the module itself, or the VAE's decoder); a
    signature seen before (CFG's conditional and unconditional prompts) is counted once."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    distinct = list(dict.fromkeys(repr(s) for s in signatures))
    first = {key: next(s for s in signatures if repr(s) == key) for key in distinct}
    try:
        target = part(meta_copy(module))
        flops = {key: count(target, *a, **kw) for key in distinct for a, kw in [_inputs(first[key], torch.device("meta"))]}
    except RuntimeError:  # code that reads values (Tensor.item() on meta): replay on fake tensors
        target = part(meta_copy(module, fake=True))
        with FakeTensorMode(allow_non_fake_inputs=True):
            flops = {key: count(target, *a, **kw) for key in distinct for a, kw in [_inputs(first[key], None)]}
    return [flops[repr(s)] for s in signatures]


def replay(pipe: Any, inputs: Any, denoiser: str, count: Callable[..., int]) -> Any:
    """The :class:`~diffprof.flops.FlopBreakdown` of the call ``inputs`` recorded (see the module doc)."""
    from diffprof.engine.anatomy import vae_of
    from diffprof.flops import FlopBreakdown

    if inputs is None or not inputs.signatures.get(denoiser):
        raise ValueError("the call recorded no denoiser inputs (a graphed loop, or profiling switched off)")
    text_by: dict[str, int] = {}
    vae: dict[str, int] = {"vae_decode": 0, "vae_encode": 0}
    per_eval = 0
    for key, signatures in inputs.signatures.items():
        if key == denoiser:
            values = _count(getattr(pipe, key), lambda m: m, signatures, count)
            per_eval = round(sum(values) / len(values))
        elif key in vae:
            attr = "decoder" if key == "vae_decode" else "encoder"
            autoencoder = vae_of(pipe, (denoiser, *(k for k in inputs.signatures if k not in vae)))  # `vae`, or Kandinsky's `movq`
            vae[key] = sum(_count(autoencoder, lambda m, a=attr: getattr(m, a), signatures, count))
        else:
            text_by[key] = sum(_count(getattr(pipe, key), lambda m: m, signatures, count))
    return FlopBreakdown(text_encoder=sum(text_by.values()), unet_per_eval=per_eval, vae_decode=vae["vae_decode"],
                         vae_encode=vae["vae_encode"], text_by=text_by)
