"""Activation memory of a forward pass, traced on the meta device (no memory, no compute).

Why trace rather than guess: the memory an optimization saves depends on the exact code path
(diffusers' VAE tiling decodes overlapping tiles and blends them; VAE slicing decodes one image at a
time; sliced attention materialises scores a few heads at a time). Running the real modules on
``meta`` tensors under a dispatch mode follows that code path exactly and reports the largest number
of bytes that were alive at once, for any size and batch, in well under a second.

What is counted: every storage an operator creates during the call, from its creation until Python
drops the last reference to it (a weak reference on the storage says when). Weights, buffers and the
inputs exist before the call and are not counted; views and in-place results share their input's
storage and are not counted twice.

Fused attention: on meta tensors ``scaled_dot_product_attention`` decomposes into the math path
(``bmm`` + ``softmax``), which materialises the full ``tokens x tokens`` score matrix. The kernels
that run for real (flash / memory-efficient on CUDA, flash on CPU) never hold it, so the trace
replaces the call by its output plus the log-sum-exp workspace those kernels keep. Code that
computes attention explicitly (``eager_attention``, ``attention_slicing``) is traced as written,
quadratic term included.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage_key(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage()._cdata)


class _LiveBytes(TorchDispatchMode):
    """Bytes of storages created inside the mode and still referenced; ``peak`` is the maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive: dict[int, weakref.finalize] = {}

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._alive.pop(key, None)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = int(storage._cdata)
            if key in inputs or key in self._alive:
                continue  # a view or an in-place result: no new memory
            nbytes = int(storage.nbytes())
            self._alive[key] = weakref.finalize(storage, self._free, key, nbytes)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out


class _FusedAttention(TorchFunctionMode):
    """``scaled_dot_product_attention`` as the fused kernels allocate it: output + log-sum-exp."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        if func is not F.scaled_dot_product_attention:
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        named = dict(zip(("query", "key", "value"), args))  # diffusers' attention dispatch passes them by name
        query, value = named.get("query", kwargs.get("query")), named.get("value", kwargs.get("value"))
        out = query.new_empty((*query.shape[:-1], value.shape[-1]))
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)  # held by the kernel while it runs
        del lse
        return out


@contextmanager
def _tracing() -> Iterator[_LiveBytes]:
    with torch.no_grad(), _FusedAttention(), _LiveBytes() as live:
        yield live


@dataclass(frozen=True)
class MemoryTrace:
    """Result of one traced call: the activation peak and how often a watched module ran."""

    peak_bytes: int
    calls: int = 1


def trace_memory(fn: Callable[..., Any], *args: Any, calls_of: torch.nn.Module | None = None, **kwargs: Any) -> MemoryTrace:
    """Largest number of bytes alive at once while ``fn(*args, **kwargs)`` runs on meta tensors.

    The result stays counted until ``fn`` returns, as in a real pipeline, where a phase's output is
    alive when the next phase starts. ``calls_of`` counts that module's forward calls during ``fn``
    (the VAE decoder runs once per tile and per slice).
    """
    calls = 0

    def pre(mod: Any, inputs: Any) -> None:
        nonlocal calls
        calls += 1

    handle = calls_of.register_forward_pre_hook(pre) if calls_of is not None else None
    try:
        with _tracing() as live:
            fn(*args, **kwargs)
    finally:
        if handle is not None:
            handle.remove()
    return MemoryTrace(live.peak, calls if calls_of is not None else 1)
