"""Per-component instrumentation of a diffusers pipeline through public hooks only.

* text encoders, UNet, VAE encoder and decoder: ``nn.Module`` forward pre/post hooks, installed
  once per engine on whatever module the pipeline holds (the compiled wrapper when compiled, so
  the hook runs outside the compiled graph);
* denoising steps: diffusers' ``callback_on_step_end``. Step 0 opens at the first UNet call; step
  *i* closes in the callback of step *i*, which opens step *i+1* unless it was the last, so steps
  tile the loop with no gaps and none can span two calls.

All state of one call lives in a :class:`CallState` created per call; hooks do nothing when no
call is active (e.g. a user calling the pipeline directly).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from diffprof.profiler import Operation, OperationRecord, Profiler

CATEGORY = "model_inference"


class CallState:
    """Operations of one pipeline call; closes whatever is left open if the call fails."""

    def __init__(self, profiler: Profiler, unet_spans: bool) -> None:
        self.profiler = profiler
        self.unet_spans = unet_spans
        self.open: list[Operation] = []
        self.step = 0
        self.step_op: Operation | None = None
        self.final_latents: torch.Tensor | None = None
        self.unet_calls = 0
        self.outer_record: OperationRecord | None = None

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
    """Hooks installed once on a pipeline's components; active only inside :meth:`call`."""

    def __init__(self, pipe: Any, profiler: Profiler, *, unet_spans: bool = True) -> None:
        self.pipe = pipe
        self.profiler = profiler
        self.unet_spans = unet_spans and profiler.level != "minimal"
        self._local = threading.local()
        self._handles: list[Any] = []
        self._component_ops: dict[int, list[Operation]] = {}
        self.install()

    # ----------------------------------------------------------------- hooks
    def _state(self) -> CallState | None:
        return getattr(self._local, "state", None)

    def _hook_component(self, module: torch.nn.Module, name: str, **labels: Any) -> None:
        def pre(mod: Any, args: Any) -> None:
            state = self._state()
            if state is not None:
                state.push(name, **labels)

        def post(mod: Any, args: Any, output: Any) -> None:
            state = self._state()
            if state is not None and state.open and state.open[-1].name == name:
                state.pop(state.open[-1])

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post))

    def _hook_unet(self, module: torch.nn.Module) -> None:
        def pre(mod: Any, args: Any) -> None:
            state = self._state()
            if state is None:
                return
            if state.step_op is None:
                state.step_op = state.push("denoising_step", memory=False, step=state.step)
            state.unet_calls += 1
            if state.unet_spans:
                state.push("unet", memory=False)

        def post(mod: Any, args: Any, output: Any) -> None:
            state = self._state()
            if state is not None and state.unet_spans and state.open and state.open[-1].name == "unet":
                state.pop(state.open[-1])

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post))

    def install(self) -> None:
        if not self.profiler.enabled:
            return
        pipe = self.pipe
        for attr in ("text_encoder", "text_encoder_2"):
            module = getattr(pipe, attr, None)
            if isinstance(module, torch.nn.Module):
                self._hook_component(module, "text_encoding", component=attr)
        if isinstance(getattr(pipe, "unet", None), torch.nn.Module):
            self._hook_unet(pipe.unet)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            if isinstance(getattr(vae, "encoder", None), torch.nn.Module):
                self._hook_component(vae.encoder, "vae_encode")
            if isinstance(getattr(vae, "decoder", None), torch.nn.Module):
                self._hook_component(vae.decoder, "vae_decode")

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -------------------------------------------------------------- callback
    def step_callback(self, pipe: Any, i: int, t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end``: close step *i*, open *i+1* unless it was the last."""
        state = self._state()
        if state is None:
            return callback_kwargs
        total = getattr(pipe, "num_timesteps", None)
        last = total is not None and i + 1 >= total
        if last:
            state.final_latents = callback_kwargs.get("latents")
        while state.open and state.open[-1] is not state.step_op:  # e.g. a unet span left open
            state.pop(state.open[-1])
        state.pop(state.step_op)
        state.step += 1
        state.step_op = None if last else state.push("denoising_step", memory=False, step=state.step)
        return callback_kwargs

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
