"""Per-component instrumentation of a diffusers pipeline through public hooks only.

* text encoders (however many), the denoiser (``unet`` or ``transformer``), the VAE encoder and
  decoder: ``nn.Module`` forward pre/post hooks, installed once per engine on the modules the
  pipeline's :class:`~diffprof.engine.anatomy.Anatomy` names (the compiled wrapper when compiled, so
  the hook runs outside the compiled graph);
* denoising steps: diffusers' ``callback_on_step_end``. Step 0 opens at the first denoiser call; step
  *i* closes in the callback of step *i*, which opens step *i+1* unless it was the last, so steps
  tile the loop with no gaps and none can span two calls. Pipelines with only the older
  ``callback(step, t, latents)`` (PixArt) close a step there and open the next at the next denoiser
  call; pipelines with neither get one step per denoiser call.

The first calls of each component also leave the shapes they were called with
(:class:`CallInputs`), from which :mod:`diffprof.flops` counts what actually ran for pipelines no
family builder covers. All state of one call lives in a :class:`CallState` created per call; hooks
do nothing when no call is active (e.g. a user calling the pipeline directly).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_map

from diffprof.engine.timing import DENOISER_SPANS
from diffprof.profiler import Operation, OperationRecord, Profiler

CATEGORY = "model_inference"
#: Input signatures kept per component and call (a CFG pipeline that runs its conditional and
#: unconditional halves apart needs both of the first two denoiser calls).
KEPT_SIGNATURES = 2


@dataclass(frozen=True)
class TensorShape:
    """A tensor argument as FLOP counting needs it: shape and dtype, no data."""

    shape: tuple[int, ...]
    dtype: torch.dtype


def signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` with every tensor replaced by its :class:`TensorShape`."""
    return tree_map(lambda x: TensorShape(tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else x, (args, kwargs))


@dataclass
class CallInputs:
    """The input signatures of one call's first forwards, per component (``text_encoder_2``,
    ``transformer``, ``vae_decode``) and how often each ran."""

    signatures: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Count one forward of ``key``; keep its signature (a denoiser's only for its first calls: the
        loop repeats them)."""
        seen = self.calls.get(key, 0)
        self.calls[key] = seen + 1
        if seen < KEPT_SIGNATURES or key not in DENOISER_SPANS:
            self.signatures.setdefault(key, []).append(signature(args, kwargs))


class CallState:
    """Operations of one pipeline call; closes whatever is left open if the call fails."""

    def __init__(self, profiler: Profiler, unet_spans: bool) -> None:
        self.profiler = profiler
        self.unet_spans = unet_spans
        self.open: list[Operation] = []
        self.step = 0
        self.step_op: Operation | None = None
        self.final_latents: torch.Tensor | None = None
        self.unet_calls = 0  #: denoiser evaluations (forward calls of the UNet or transformer)
        self.outer_record: OperationRecord | None = None
        self.inputs = CallInputs()

    def push(self, name: str, *, memory: bool = True, **labels: Any) -> Operation:
        op = self.profiler.profile_operation(name, CATEGORY, memory=memory, **labels).start()
        self.open.append(op)
        return op

    def pop(self, op: Operation | None) -> None:
        if op is None or not self.open:
            return
        if self.open[-1] is op:
            self.open.pop()
            op.stop()

    def close_all(self, exc: BaseException | None = None) -> None:
        """Close operations a failed forward left open, innermost first, marking the failure."""
        while self.open:
            op = self.open.pop()
            op.__exit__(type(exc) if exc else None, exc, None)


class PipelineInstrumentation:
    """Hooks installed once on a pipeline's components; active only inside :meth:`call`.

    ``anatomy`` names the components (:func:`~diffprof.engine.anatomy.anatomy_of`); without one the
    SD layout is assumed (``text_encoder``, ``text_encoder_2``, ``unet``, ``vae``).
    """

    def __init__(self, pipe: Any, profiler: Profiler, *, unet_spans: bool = True, anatomy: Any = None) -> None:
        self.pipe = pipe
        self.profiler = profiler
        self.anatomy = anatomy
        self.unet_spans = unet_spans and profiler.level != "minimal"
        self._local = threading.local()
        self._handles: list[Any] = []
        self.install()

    # ----------------------------------------------------------------- hooks
    def _state(self) -> CallState | None:
        return getattr(self._local, "state", None)

    def _hook_component(self, module: torch.nn.Module, name: str, key: str, **labels: Any) -> None:
        def pre(mod: Any, args: Any, kwargs: Any) -> None:
            state = self._state()
            if state is not None:
                if name == "vae_decode" and state.step_op is not None:  # a last step no callback closed
                    self._end_step(state, None)
                state.inputs.add(key, args, kwargs)
                state.push(name, **labels)

        def post(mod: Any, args: Any, output: Any) -> None:
            state = self._state()
            if state is not None and state.open and state.open[-1].name == name:
                state.pop(state.open[-1])

        self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(module.register_forward_hook(post))

    def _hook_denoiser(self, module: torch.nn.Module, name: str) -> None:
        def pre(mod: Any, args: Any, kwargs: Any) -> None:
            state = self._state()
            if state is None:
                return
            if state.step_op is None:
                state.step_op = state.push("denoising_step", memory=False, step=state.step)
            elif self._step_per_call and state.unet_calls:  # no callback: each evaluation is a step
                self._end_step(state, None)
                state.step_op = state.push("denoising_step", memory=False, step=state.step)
            state.unet_calls += 1
            state.inputs.add(name, args, kwargs)
            if state.unet_spans:
                state.push(name, memory=False)

        def post(mod: Any, args: Any, output: Any) -> None:
            state = self._state()
            if state is not None and state.unet_spans and state.open and state.open[-1].name == name:
                state.pop(state.open[-1])

        self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(module.register_forward_hook(post))

    @property
    def _step_per_call(self) -> bool:
        return self.anatomy is not None and self.anatomy.step_hook == "none"

    def install(self) -> None:
        if not self.profiler.enabled:
            return
        pipe, anatomy = self.pipe, self.anatomy
        encoders = anatomy.text_encoders if anatomy is not None else ("text_encoder", "text_encoder_2")
        for attr in encoders:
            module = getattr(pipe, attr, None)
            if isinstance(module, torch.nn.Module):
                self._hook_component(module, "text_encoding", attr, component=attr)
        denoiser = anatomy.denoiser if anatomy is not None else "unet"
        if isinstance(getattr(pipe, denoiser, None), torch.nn.Module):
            self._hook_denoiser(getattr(pipe, denoiser), denoiser)
        if anatomy is not None:
            parts = dict(anatomy.vae_parts)
        else:
            vae = getattr(pipe, "vae", None)
            parts = {span: getattr(vae, attr, None) for span, attr in (("vae_encode", "encoder"), ("vae_decode", "decoder"))}
        for span, module in parts.items():
            if isinstance(module, torch.nn.Module):
                self._hook_component(module, span, span)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -------------------------------------------------------------- callback
    def _end_step(self, state: CallState, latents: Any) -> None:
        if latents is not None:
            state.final_latents = latents
        while state.open and state.open[-1] is not state.step_op:  # e.g. a denoiser span left open
            state.pop(state.open[-1])
        state.pop(state.step_op)
        state.step += 1
        state.step_op = None

    def step_callback(self, pipe: Any, i: int, t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end``: close step *i*, open *i+1* unless it was the last."""
        state = self._state()
        if state is None:
            return callback_kwargs
        total = getattr(pipe, "num_timesteps", None)
        last = total is not None and i + 1 >= total
        self._end_step(state, callback_kwargs.get("latents"))
        if not last:
            state.step_op = state.push("denoising_step", memory=False, step=state.step)
        return callback_kwargs

    def legacy_callback(self, i: int, t: Any, latents: torch.Tensor) -> None:
        """The older ``callback(step, timestep, latents)``: close the step; the next denoiser call opens the next."""
        state = self._state()
        if state is not None:
            self._end_step(state, latents)

    def callback_kwargs(self) -> dict[str, Any]:
        """What a pipeline call passes so step ends are seen (none when the pipeline offers no callback)."""
        hook = self.anatomy.step_hook if self.anatomy is not None else "on_step_end"
        if hook == "on_step_end":
            return {"callback_on_step_end": self.step_callback}
        if hook == "legacy":
            return {"callback": self.legacy_callback, "callback_steps": 1}
        return {}

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Suspend recording on this thread (warm-up and CUDA graph capture must not record)."""
        saved = self._state()
        self._local.state = None
        try:
            yield
        finally:
            self._local.state = saved

    # ------------------------------------------------------------------ call
    @contextmanager
    def call(self, name: str = "diffusion_image_generation", **labels: Any) -> Iterator[CallState]:
        """Wrap one pipeline call: everything inside nests under one ``name`` operation."""
        if self._state() is not None:
            raise RuntimeError("a pipeline call is already being instrumented on this thread")
        state = CallState(self.profiler, self.unet_spans)
        outer = self.profiler.profile_operation(name, CATEGORY, **labels)
        state.outer_record = outer.__enter__()
        self._local.state = state
        try:
            yield state
        except BaseException as exc:
            self._local.state = None
            state.close_all(exc)
            outer.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._local.state = None
        state.close_all()
        outer.__exit__(None, None, None)
