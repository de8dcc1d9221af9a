"""The fast text-to-image path: the pipeline's own phases, run so the denoising loop can be one
CUDA graph (SD and SDXL here; the flow-matching transformers SD3 and FLUX in :mod:`diffprof.engine.flow_fast`).

``diffusers``' ``__call__`` cannot be captured whole (host-side prompt handling, progress bars,
first-step index lookups that synchronize, diffusers #9475/#9485). This module runs the same
phases through the pipeline's public components — ``encode_prompt``, ``prepare_latents``, the
scheduler's ``set_timesteps``/``set_begin_index``/``scale_model_input``/``step``, the UNet, the VAE and
``image_processor.postprocess`` — in the same order with the same arithmetic, so the result
matches the pipeline's (tested bit-for-bit on CPU without the graph). On CUDA the whole loop
(every UNet call, the guidance combination and every scheduler step) is captured once per
(steps, scheduler, size, batch, guidance) and replayed: one launch per call instead of thousands,
and no host synchronization inside the loop.

Graph capture bakes in the schedule, so only deterministic schedulers whose ``step`` does no
host-side tensor lookups are graphed; others (or a capture that fails) run the same loop eagerly,
and the reason is kept in the result's settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

StepCallback = Callable[[int, Any, torch.Tensor], None]

#: Schedulers known to capture cleanly: host-side Python state only, no sync in ``step``. Each is
#: checked on a GPU against its eager loop (``pytest -m cuda``). UniPC is not: its ``step`` builds
#: tensors from Python lists on the device every step (a pageable host-to-device copy, which CUDA
#: graph capture refuses; H100/H200, diffusers 0.42.1), so it runs the loop eagerly, compiled.
GRAPH_SAFE = {"euler", "euler_karras", "dpmpp_2m", "dpmpp_2m_karras", "deis", "heun", "dpm_single", "lms",
              # flow matching: FlowMatchEuler's step indexes its sigmas by a Python step counter (the loop
              # sets its begin index, so no timestep lookup syncs); DPM-Solver and DEIS on flow sigmas run
              # the same step code as their noise-schedule versions above. FlowMatchHeun is not: its step
              # compares a sigma tensor with Python floats (`s_tmin <= sigma <= s_tmax`), a host sync.
              "flow_euler", "flow_euler_karras", "flow_dpmpp_2m", "flow_dpm_single", "flow_deis"}


@dataclass
class LoopInputs:
    """Everything the denoising loop reads: static buffers when graphed."""

    latents: torch.Tensor
    prompt_embeds: torch.Tensor
    added_cond: dict[str, torch.Tensor] | None


@dataclass
class FastOutput:
    latents: torch.Tensor
    images: list[Any]
    graphed: bool
    note: str | None = None


class GraphedLoop:
    """One captured denoising loop for one key (steps, scheduler, size, batch, guidance)."""

    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: LoopInputs, output: torch.Tensor, keep: tuple[torch.Tensor, ...]) -> None:
        self.graph = graph
        self.inputs = inputs
        self.output = output
        # The graph reads tensors made before the capture: the timesteps it was captured with (each
        # UNet call's ``t`` is a view of them) and whatever else the scheduler holds. The scheduler
        # drops them at its next ``set_timesteps``; unless they are kept alive here, the allocator
        # hands their memory to other tensors and replays read garbage.
        self.keep = keep

    def __call__(self, inputs: LoopInputs) -> torch.Tensor:
        self.inputs.latents.copy_(inputs.latents)
        self.inputs.prompt_embeds.copy_(inputs.prompt_embeds)
        if inputs.added_cond and self.inputs.added_cond:
            for k, v in inputs.added_cond.items():
                self.inputs.added_cond[k].copy_(v)
        self.graph.replay()
        return self.output.clone()


class FastPath:
    """Runs txt2img for an SD/SDXL pipeline with the loop optionally captured in a CUDA graph.

    ``text_cache`` (a :class:`~diffprof.engine.text_cache.TextCache`) keeps the embeddings of repeated
    prompts; :attr:`encoded` says whether the last call ran its text encoders."""

    def __init__(self, pipe: Any, family: str, *, use_graph: bool, vae_dtype: torch.dtype | None = None, text_cache: Any = None) -> None:
        self.pipe = pipe
        self.family = family
        self.use_graph = use_graph
        self.vae_dtype = vae_dtype
        self.text_cache = text_cache
        self.encoded = True
        self._graphs: dict[tuple[Any, ...], GraphedLoop | str] = {}

    @property
    def denoiser(self) -> Any:
        return self.pipe.unet

    # ------------------------------------------------------------- phases
    def encode(self, call: dict[str, Any], cfg: bool, device: torch.device) -> tuple[Any, ...]:
        """``encode_prompt`` with the arguments the pipeline's own ``__call__`` would give it for
        ``call`` (its keyword arguments), through the text cache when there is one."""
        from diffprof.engine.text_cache import encode_kwargs

        kwargs = encode_kwargs(self.pipe, call, cfg, device)
        if self.text_cache is None:
            self.encoded = True
            return tuple(self.pipe.encode_prompt(**kwargs))
        outputs, hit = self.text_cache.encode(self.pipe, kwargs)
        self.encoded = not hit
        return outputs

    def cfg(self, guidance: float) -> bool:
        from diffprof.engine.text_cache import cfg_of

        return cfg_of(self.pipe, guidance)

    def _added_cond(self, pooled: torch.Tensor, npooled: torch.Tensor | None, height: int, width: int, total: int, cfg: bool, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        # SDXL micro-conditioning: (original size, crop top-left, target size), as the pipeline
        # builds it by default (original = target = the requested size, no crop).
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype)
        text_embeds = pooled
        if cfg:
            text_embeds = torch.cat([npooled, pooled], dim=0)  # type: ignore[list-item]
            time_ids = torch.cat([time_ids, time_ids], dim=0)
        return {"text_embeds": text_embeds.to(device), "time_ids": time_ids.to(device).repeat(total, 1)}

    def loop(self, inputs: LoopInputs, timesteps: torch.Tensor, guidance: float, cfg: bool, callback: StepCallback | None = None) -> torch.Tensor:
        """The denoising loop, exactly as the pipeline runs it, with no host syncs; ``callback``
        (eager runs only) sees each step end like ``callback_on_step_end``."""
        pipe, scheduler = self.pipe, self.pipe.scheduler
        latents = inputs.latents
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            kwargs: dict[str, Any] = {"encoder_hidden_states": inputs.prompt_embeds, "return_dict": False}
            if inputs.added_cond is not None:
                kwargs["added_cond_kwargs"] = inputs.added_cond
            noise = pipe.unet(model_input, t, **kwargs)[0]
            if cfg:
                uncond, text = noise.chunk(2)
                noise = uncond + guidance * (text - uncond)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]
            if callback is not None:
                callback(i, t, latents)
        return latents

    def decode(self, latents: torch.Tensor, width: int, height: int) -> list[Any]:
        pipe, vae = self.pipe, self.pipe.vae
        dtype = self.vae_dtype or vae.dtype
        if self.vae_dtype is None and vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            dtype = torch.float32  # what the pipeline does for SDXL's fp16-overflowing VAE
        if vae.dtype != dtype:
            vae.to(dtype)
        z = latents.to(dtype) / vae.config.scaling_factor
        if getattr(vae.config, "shift_factor", None):
            z = z + vae.config.shift_factor
        image = vae.decode(z, return_dict=False)[0]
        return to_pil(pipe.image_processor, image)

    # ---------------------------------------------------------------- run
    def prepare(self, call: dict[str, Any], steps: int, width: int, height: int, guidance: float, cfg: bool, device: torch.device) -> LoopInputs:
        """Phases 1-2 of SD's ``__call__``: the text embeddings and the initial latents (same generator use)."""
        pipe = self.pipe
        prompts, num_images = call["prompt"], call.get("num_images_per_prompt", 1)
        total = len(prompts) * num_images
        # 1. Text encoding
        encoded = self.encode(call, cfg, device)
        if self.family == "sdxl":
            pe, npe, pooled, npooled = encoded
            added = self._added_cond(pooled, npooled, height, width, total, cfg, pe.dtype, device)
        else:
            pe, npe = encoded
            added = None
        prompt_embeds = torch.cat([npe, pe]) if cfg else pe
        # 2. Timesteps and latents (same generator use as the pipeline)
        self._restart(steps, device)  # prepare_latents scales the noise by the schedule's init_noise_sigma
        latents = pipe.prepare_latents(total, pipe.unet.config.in_channels, height, width, prompt_embeds.dtype, device, call["generator"])
        return LoopInputs(latents, prompt_embeds.to(device), added)

    def execution_device(self) -> torch.device:
        """Where the models run: under CPU offload the denoiser itself sits on the CPU (or, sequential,
        on the meta device) until its hook moves it, so ask the pipeline, as its own ``__call__`` does."""
        return getattr(self.pipe, "_execution_device", None) or getattr(self.denoiser, "device", torch.device("cpu"))

    def run(
        self,
        call: dict[str, Any],
        *,
        steps: int,
        guidance: float,
        width: int,
        height: int,
        scheduler_name: str,
        decode: bool = True,
        step_callback: StepCallback | None = None,
        loop_span: Callable[[], Any] | None = None,
        paused: Callable[[], Any] | None = None,
    ) -> FastOutput:
        """One call with the pipeline's keyword arguments ``call`` (prompt, negative prompt, images
        per prompt, generator, the family's options). ``step_callback`` times eager steps;
        ``loop_span`` opens the operation around a graph replay; ``paused`` suspends instrumentation
        while warming up and capturing."""
        device = self.execution_device()
        cfg = self.cfg(guidance)
        inputs = self.prepare(call, steps, width, height, guidance, cfg, device)
        # 3. Denoising loop: graphed when possible
        note = None
        graphed = False
        if self.use_graph and device.type == "cuda":
            key = (steps, scheduler_name, width, height, tuple(inputs.latents.shape), float(guidance), str(inputs.prompt_embeds.dtype),
                   tuple(inputs.prompt_embeds.shape), cfg)
            entry = self._graphs.get(key)
            if entry is None:
                with paused() if paused else nullcontext():
                    entry = self._capture(inputs, steps, guidance, cfg, scheduler_name)
                self._graphs[key] = entry
            if isinstance(entry, GraphedLoop):
                with loop_span() if loop_span else nullcontext():
                    latents = entry(inputs)
                graphed = True
            else:
                note = entry
        if not graphed:
            latents = self.loop(inputs, self._restart(steps, device), guidance, cfg, step_callback)
        # 4. Decode
        images = self.decode(latents, width, height) if decode else []
        return FastOutput(latents=latents, images=images, graphed=graphed, note=note)

    def _restart(self, steps: int, device: torch.device) -> torch.Tensor:
        """Set the schedule for ``steps`` from its first step, as the pipeline does; its timesteps."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return scheduler.timesteps

    def _capture(self, inputs: LoopInputs, steps: int, guidance: float, cfg: bool, scheduler_name: str) -> GraphedLoop | str:
        """Warm up on a side stream, then capture the whole loop; a reason string if it can't."""
        if scheduler_name == "default":  # the model's own scheduler: graph-safe or not by what it is
            from diffprof.engine.schedulers import name_of

            scheduler_name = f"default ({name_of(self.pipe.scheduler)})"
        if scheduler_name.removeprefix("default (").removesuffix(")") not in GRAPH_SAFE:
            return f"scheduler {scheduler_name} is not graph-safe; ran the loop eagerly"
        scheduler = self.pipe.scheduler
        static = LoopInputs(
            inputs.latents.clone(),
            inputs.prompt_embeds.clone(),
            {k: v.clone() for k, v in inputs.added_cond.items()} if inputs.added_cond else None,
        )
        device = static.latents.device
        try:
            side = side_stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                # one warm-up loop: compile, lazy init and allocator growth happen here, not in capture
                self.loop(static, self._restart(steps, device), guidance, cfg)
            torch.cuda.current_stream(device).wait_stream(side)
            timesteps = self._restart(steps, device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                output = self.loop(static, timesteps, guidance, cfg)
            held = tuple(v for v in vars(scheduler).values() if isinstance(v, torch.Tensor))
            return GraphedLoop(graph, static, output, (timesteps, *held))
        except Exception as exc:  # noqa: BLE001 - capture limits are data: fall back and say why
            torch.cuda.synchronize(device)
            return f"CUDA graph capture failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); ran the loop eagerly"


@functools.cache
def side_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream per device that warm-ups and captures run on. cuBLAS keeps a workspace
    (tens of MiB on Hopper) per stream for the life of the process, so a fresh stream per capture
    left ~33 MiB allocated after each graphed engine was dropped (H200, tiny-sd), inflating every
    later memory-suite cell's peak."""
    return torch.cuda.Stream(device)


def to_pil(processor: Any, image: torch.Tensor) -> list[Image.Image]:
    """``processor.postprocess(image, output_type="pil")`` with the 8-bit conversion done on the
    image's device: the same bytes (same float32 arithmetic, round half to even), a quarter of the
    data copied to the host, and no float pass over the image on the CPU."""
    if getattr(processor.config, "do_normalize", True):
        image = processor.denormalize(image)
    pixels = (image.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if pixels.shape[-1] == 1:
        return [Image.fromarray(p.squeeze(-1)) for p in pixels]  # 2-D uint8: mode "L"
    return [Image.fromarray(p) for p in pixels]
