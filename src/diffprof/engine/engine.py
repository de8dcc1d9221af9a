"""The engine: load a pipeline once, generate many times, get images and timings back.

    engine = Engine.load("tiny-sd")                       # or "sd15", weights="synthetic", ...
    result = engine.generate(prompt="a red circle", steps=20, scheduler="euler")
    result.images[0].save("out.png"); print(result.timing.step_median_s)

Every call is instrumented per component (see :mod:`diffprof.engine.instrument`), found from the
pipeline's :class:`~diffprof.engine.anatomy.Anatomy` (SD's UNet or a diffusion transformer, however
many text encoders); scheduler changes use ``from_config`` and task changes ``from_pipe``, so weights
load once.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from diffprof.clock import SYSTEM_CLOCK, Clock
from diffprof.config import TASKS
from diffprof.engine.anatomy import Anatomy, anatomy_of
from diffprof.engine.apply import apply_optimizations, saveable_weights
from diffprof.engine.calls import call_kwargs
from diffprof.engine.model_facts import check_multiple
from diffprof.engine.devices import clean, resolve_engine_device, synchronize, timing_note
from diffprof.engine.instrument import PipelineInstrumentation
from diffprof.engine.precision import DTYPES, resolve_precision
from diffprof.engine.refusals import check_ran_size, generic_call
from diffprof.engine.request import GenerationRequest, GenerationResult, LoadInfo, call_images, check_request
from diffprof.engine.schedulers import DEFAULT, check_applies, check_scheduler, make_scheduler
from diffprof.engine.schedulers import name_of as scheduler_name
from diffprof.engine.text_cache import TextCache
from diffprof.engine.switches import Optimizations, for_model
from diffprof.engine.timing import timing_from_records
from diffprof.errors import ConfigError, unknown_choice
from diffprof.profiler import Profiler
from diffprof.results import FAST_PATH_NOTE, PRESET_NOTE, PROFILE_NOTE, STAND_IN_NOTE, TIMING_NOTE

#: What a call timed at profiler level ``detailed`` says about its times.
DETAILED_NOTE = ("timed at profiler level detailed: its kernel capture makes every call several times slower "
                 "(tiny-sd on a CPU: 68 -> 398 ms per image); time at level standard (2-5% overhead) to compare speed")

__all__ = ["Engine", "GenerationRequest", "GenerationResult", "LoadInfo", "resolve_engine_device", "timing_note"]


class Engine:
    """A loaded, optimized, instrumented pipeline. Build with :meth:`load`."""

    def __init__(
        self,
        loaded: Any,
        *,
        model: str,
        device: torch.device,
        precision: str,
        optimizations: Optimizations,
        profiler: Profiler,
        load_info: LoadInfo,
        clock: Clock | None = None,
        anatomy: Anatomy | None = None,
    ) -> None:
        self.loaded = loaded
        #: The pipeline's parts (denoiser, text encoders, VAE) and how a call runs them.
        self.anatomy = anatomy or anatomy_of(loaded)
        #: What every call's total time is read from; the profiler's, so records and totals agree.
        self.clock: Clock = clock or profiler.clock
        self._settings = contextlib.ExitStack()  # process-global settings the switches hold (apply_optimizations); close() restores them
        self.model = model
        self.family: str = loaded.family
        self.preset = loaded.preset
        self.device = device
        self.precision = precision
        self.optimizations = optimizations
        self.profiler = profiler
        self.load_info = load_info
        self.base = loaded.pipeline
        self.base.set_progress_bar_config(disable=True)
        self._base_scheduler_config = dict(self.base.scheduler.config)
        self._scheduler = DEFAULT
        self._pipes: dict[str, Any] = {self._base_task(): self.base}
        self.instrumentation = PipelineInstrumentation(self.base, profiler, anatomy=self.anatomy)
        self._fast: Any = None  # the FastPath, built on the first txt2img call that takes it
        #: Embeddings of repeated prompts (the text_cache switch), for every task and path.
        self.text_cache = TextCache() if optimizations.text_cache else None
        self._preset_note: str | None = None  # what `fast` left out on this device
        self._compile_key: str | None = None  # set by load() when something is compiled
        self._graph_counts: tuple[int, int] = (0, 0)  # inductor FX-graph cache (hits, misses) when the cache was loaded

    # ------------------------------------------------------------------ load
    @classmethod
    def load(
        cls,
        model: str | None = None,
        weights: str = "auto",
        *,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        optimize: str | list[str] | Optimizations | None = None,
        profiler: Profiler | None = None,
        seed: int = 0,
        allow_pickle: bool = False,
        clock: Clock | None = None,
    ) -> Engine:
        """Load ``model`` from ``weights``, apply precision and optimizations, install hooks.

        Args:
            model (`str`, defaults to ``tiny-sd``): a preset, a diffusers folder or a .safetensors file.
            weights (`str`, defaults to ``auto``): ``auto``, ``hub``, ``synthetic`` or ``builtin``.
            device (`str`, defaults to ``auto``): CUDA when available, else CPU.
            precision (`str`, defaults to ``auto``): fp16 on CUDA, fp32 on CPU (``half``: bf16 on CPU).
            optimize: switch names (``["vae_slicing", "compile=unet"]``) or an :class:`Optimizations`.
            profiler: where records go; a ``standard`` profiler on the device by default.
            clock: nanoseconds for load and call times (default: the profiler's, else
                ``time.perf_counter_ns``); tests pass a :class:`~diffprof.clock.FakeClock`.
        """
        from diffprof.models.presets import DEFAULT_MODEL, PRESETS
        from diffprof.models.sources import load_pipeline

        model = model or DEFAULT_MODEL
        dev = resolve_engine_device(device)
        prec = resolve_precision(precision, dev)
        preset = PRESETS.get(model)
        # refused before loading when the preset says which denoiser and family it has
        opts, _ = for_model(optimize, preset.denoiser if preset else None, preset.family if preset else None, dev, prec)
        clock = clock or (profiler.clock if profiler is not None else SYSTEM_CLOCK)
        profiler = profiler or Profiler("standard", device=dev, clock=clock)
        # an offload keeps the weights in host memory: load them there (synthetic ones drawn on the device
        # one component at a time, so they are the weights a resident engine of the same seed has)
        load_device = torch.device("cpu") if opts.places else dev
        clean(dev)
        t0 = clock()
        with profiler.profile_operation("pipeline_load", "model_loading", model=model, weights=weights, precision=prec) as rec:
            loaded = load_pipeline(model, weights, dtype=DTYPES[prec], device=load_device, seed=seed, allow_pickle=allow_pickle, generate_on=dev)
            anatomy = anatomy_of(loaded)  # a pipeline diffprof cannot run is refused here, naming what it lacks
            opts, preset_note = for_model(optimize, anatomy.denoiser, anatomy.family, dev, prec)
            settings = apply_optimizations(loaded.pipeline, opts, dev)
            if opts.drop_t5:  # the pipeline runs without a component now
                loaded.refresh()
                anatomy = anatomy_of(loaded)
            synchronize(dev)
        seconds = (clock() - t0) / 1e9
        info = LoadInfo(
            model=model,
            source=loaded.source,
            family=loaded.family,
            seconds=seconds,
            bytes_read=loaded.bytes_read,
            device=str(dev),
            precision=prec,
        )
        if rec is not None:
            rec.labels.update(bytes_read=loaded.bytes_read, source=loaded.source)
        engine = cls(loaded, model=model, device=dev, precision=prec, optimizations=opts, profiler=profiler, load_info=info, clock=clock,
                     anatomy=anatomy)
        engine._settings = settings
        engine._preset_note = preset_note
        if opts.compile:
            from diffprof.engine import compile_cache

            engine._compile_key = compile_cache.cache_key(loaded.pipeline, opts.label, prec)
            info.compile_cache = "warm" if compile_cache.load(engine._compile_key) else "cold"
            engine._graph_counts = compile_cache.graph_cache_counts()
        if dev.type == "cuda":
            info.peak_allocated = torch.cuda.max_memory_allocated(dev)
        return engine

    # ---------------------------------------------------------------- tasks
    def _base_task(self) -> str:
        return "inpaint" if self.is_inpaint_model else "txt2img"

    @property
    def is_inpaint_model(self) -> bool:
        unet = getattr(self.base, "unet", None)
        return bool(unet is not None and unet.config.in_channels == 9)

    @property
    def native_size(self) -> int:
        return self.anatomy.native_size

    def pipeline_for(self, task: str) -> Any:
        """The pipeline class for ``task`` sharing this engine's modules (``from_pipe``)."""
        if task not in TASKS:
            raise unknown_choice("task", task, TASKS)
        if task in self._pipes:
            return self._pipes[task]
        if self.is_inpaint_model:
            raise ConfigError(
                f"{self.model} is an inpainting model (9-channel UNet); it only runs --task inpaint",
                "use a text-to-image preset such as sd15 or sdxl for txt2img and img2img",
            )
        pipe = self._derive(task)
        pipe.set_progress_bar_config(disable=True)
        self._pipes[task] = pipe
        return pipe

    def _derive(self, task: str) -> Any:
        """The family's class for ``task`` (``FluxImg2ImgPipeline`` ...), or diffusers' own for pipelines no
        family covers (``engine/tasks.py``); a :class:`ConfigError` when there is none."""
        if self.anatomy.spec is not None:
            from diffprof.models.pipelines import for_task

            return for_task(self.base, self.family, task)
        from diffprof.engine.tasks import generic_task_pipeline

        return generic_task_pipeline(self.base, task)

    def set_scheduler(self, name: str, task: str = "txt2img") -> None:
        """Swap the scheduler on every task pipeline (``from_config``: no weights reloaded); a scheduler of
        the other kind (a noise-schedule solver on a flow-matching model), or one ``task`` cannot use,
        is refused with the ones that fit."""
        check_scheduler(name)
        check_applies(name, self.anatomy.scheduler_kind, self.model, task)
        if name == self._scheduler:
            return
        if name == DEFAULT:
            import diffusers

            scheduler = getattr(diffusers, self._base_scheduler_config["_class_name"]).from_config(self._base_scheduler_config)
        else:
            scheduler = make_scheduler(name, self._base_scheduler_config)
        for pipe in self._pipes.values():
            pipe.scheduler = scheduler
        self.base.scheduler = scheduler
        self._scheduler = name

    # -------------------------------------------------------------- generate
    def generate(self, request: GenerationRequest | None = None, **overrides: Any) -> GenerationResult:
        """Run one instrumented call; ``overrides`` replace fields of ``request``."""
        request = replace(request or GenerationRequest(), **overrides)
        # 1. Check inputs (before any work)
        pipe, kwargs, settings = self._prepare(request)
        # 2. Run, instrumented
        before = len(self.profiler.records)
        note = timing_note(self.device)
        if note:
            settings[TIMING_NOTE] = note
        if self.profiler.level == "detailed":
            settings[PROFILE_NOTE] = DETAILED_NOTE
        synchronize(self.device)
        t0 = self.clock()
        labels = {k: settings[k] for k in ("model", "task", "scheduler", "steps", "width", "height")}
        fast = self._fast_path(request)
        with torch.inference_mode(), self.instrumentation.call(images=request.total_images, **labels) as state:
            if fast is None:
                if self.text_cache is not None:
                    kwargs, settings["text_embeddings"] = self.text_cache.call_kwargs(pipe, self.family, kwargs, request.guidance)
                with generic_call(self.anatomy, pipe.scheduler, self._scheduler, self._base_scheduler_config["_class_name"], request.task,
                                  settings["width"], settings["height"]):
                    out = pipe(**kwargs, **self.instrumentation.callback_kwargs())
                if self.optimizations.fast_loop:  # asked for, not taken: say so, as a capture fallback does
                    settings["fast_path"] = "pipeline"
                    covers = "diffprof's own loop and its CUDA graph cover" if self.optimizations.cuda_graph else "diffprof's own loop covers"
                    settings[FAST_PATH_NOTE] = f"{covers} SD/SDXL/SD3/FLUX txt2img only; {request.task} on {self.family} ran the pipeline's own loop"
            else:
                out = self._run_fast(fast, request, kwargs, settings, state)
            synchronize(self.device)
        total_ns = self.clock() - t0
        if self.load_info.first_call_s is None:
            self.load_info.first_call_s = total_ns / 1e9
            if self._compile_key is not None:
                from diffprof.engine import compile_cache

                compile_cache.after_first_call(self.load_info, self._compile_key, self._graph_counts)
        # 3. Collect
        self.profiler.resolve()
        records = self.profiler.records[before:]
        timing = timing_from_records(state.outer_record, records, total_ns, request.total_images, state.unet_calls)
        images = list(out.images) if request.decode else []
        check_ran_size(images, settings["width"], settings["height"], self.anatomy.pipeline_class)
        latents = state.final_latents
        if not request.decode and latents is None:
            latents = out.images
        return GenerationResult(images=images, latents=latents, timing=timing, request=request, settings=settings, records=records,
                                inputs=state.inputs)

    def _fast_path(self, req: GenerationRequest) -> Any:
        """The FastPath when the optimizations ask for it and the request is txt2img on a family it covers."""
        from diffprof.engine.flow_fast import FAMILIES as FLOW_FAMILIES

        if not self.optimizations.fast_loop or req.task != "txt2img" or self.family not in ("sd", "sdxl", *FLOW_FAMILIES):
            return None
        if self._fast is None:
            from diffprof.engine.fast import FastPath
            from diffprof.engine.flow_fast import FlowFastPath

            cls = FlowFastPath if self.family in FLOW_FAMILIES else FastPath
            self._fast = cls(self.base, self.family, use_graph=self.optimizations.cuda_graph,
                             vae_dtype=torch.bfloat16 if self.optimizations.vae_bf16 else None, text_cache=self.text_cache)
        return self._fast

    def _run_fast(self, fast: Any, req: GenerationRequest, kwargs: dict[str, Any], settings: dict[str, Any], state: Any) -> Any:
        from types import SimpleNamespace

        inst = self.instrumentation
        n = {"steps": None}

        def step(i: int, t: Any, latents: torch.Tensor) -> None:
            if n["steps"] is None:
                n["steps"] = len(self.base.scheduler.timesteps)
            inst.step_callback(SimpleNamespace(num_timesteps=n["steps"]), i, t, {"latents": latents})

        def loop_span() -> Any:
            return self.profiler.profile_operation("denoising_loop", "model_inference", steps=req.steps, graphed=True)

        result = fast.run(kwargs, steps=req.steps, guidance=req.guidance, width=settings["width"], height=settings["height"],
                          scheduler_name=req.scheduler, decode=req.decode, step_callback=step, loop_span=loop_span, paused=inst.paused)
        settings["fast_path"] = "cuda_graph" if result.graphed else "eager_loop"
        if self.text_cache is not None:
            settings["text_embeddings"] = "encoded" if fast.encoded else "cached"
        if result.note:
            settings[FAST_PATH_NOTE] = result.note
        if state.final_latents is None:
            state.final_latents = result.latents
        return SimpleNamespace(images=result.images if req.decode else result.latents)

    def _prepare(self, req: GenerationRequest) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        check_request(req)
        pipe = self.pipeline_for(req.task)
        self.set_scheduler(req.scheduler, req.task)
        width, height, image, mask = call_images(req, self.native_size)
        check_multiple(width, height, self.anatomy.size_multiple, self.model, self.anatomy.denoiser)
        generator = torch.Generator("cpu").manual_seed(req.seed)
        kwargs = call_kwargs(pipe, self.anatomy, req, width=width, height=height, image=image, mask=mask, generator=generator)
        settings: dict[str, Any] = {
            "model": self.model,
            "source": self.load_info.source,
            "family": self.family,
            "task": req.task,
            # the scheduler that ran: ``default`` is the model's own, named (pndm, euler, ...)
            "scheduler": req.scheduler if req.scheduler != DEFAULT else f"{DEFAULT} ({scheduler_name(self.base.scheduler)})",
            "steps": req.steps,
            "guidance": req.guidance,
            "width": width,
            "height": height,
            "batch": req.total_images,
            "seed": req.seed,
            "precision": self.precision,
            "device": str(self.device),
            "optimizations": self.optimizations.label,
        }
        if req.task != "txt2img":
            settings["strength"] = req.strength
        if self.anatomy.stand_in_note:
            settings[STAND_IN_NOTE] = self.anatomy.stand_in_note
        if self._preset_note:
            settings[PRESET_NOTE] = self._preset_note
        return pipe, kwargs, settings

    def set_profiler(self, profiler: Profiler) -> None:
        """Record into another profiler (e.g. another level) without reloading or recompiling; an
        engine timing with its profiler's clock moves to the new one's, so totals and records agree."""
        self.instrumentation.remove()
        if self.clock is self.profiler.clock:
            self.clock = profiler.clock
        self.profiler = profiler
        self.instrumentation = PipelineInstrumentation(self.base, profiler, anatomy=self.anatomy)

    # -------------------------------------------------------------- lifecycle
    def save_pretrained(self, path: str | Path, **kwargs: Any) -> Path:
        """Save the loaded pipeline as a diffusers folder that plain ``from_pretrained`` loads.

        Use this rather than ``engine.base.save_pretrained``: with ``fuse_qkv`` the unfused weights
        are views of the fused layer, which safetensors refuses to write, and the fused layers are
        not part of a plain model. Optimizations stay in place for the engine (``kwargs`` go to
        diffusers' ``save_pretrained``)."""
        with saveable_weights(self.base):
            self.base.save_pretrained(str(path), **kwargs)
        return Path(path)

    def close(self) -> None:
        """Drop hooks and pipelines and free device memory (between suite cells)."""
        self.instrumentation.remove()
        self._pipes.clear()
        self._fast = None  # its captured graphs hold their memory pools
        if self.text_cache is not None:
            self.text_cache.clear()
        self.base = None
        self.loaded = None
        self._settings.close()
        clean(self.device)
