"""Measure one cell on a loaded engine: warm-up, repeats, raw samples, derived metrics.

The protocol (issue #4): warm-up calls are not recorded; each of N repeats keeps its raw
samples; memory state is cleaned before the cell; CUDA is synchronized before clocks are read
(the engine does this per call); the cell's statistics are medians of the kept samples.
"""

from __future__ import annotations

import gc
import io
import json
import statistics
import time
from datetime import datetime, timezone
from typing import Any

import torch

from diffprof.config import RunConfig
from diffprof.engine import Engine, GenerationRequest, GenerationResult
from diffprof.profiler.samplers import ResourceSampler
from diffprof.results import CellResult
from diffprof.suites.base import Cell

THUMBNAIL = 256


def request_from_config(c: RunConfig) -> GenerationRequest:
    return GenerationRequest(
        prompt=c.prompt,
        negative_prompt=c.negative_prompt,
        task=c.task,
        scheduler=c.scheduler,
        steps=c.steps,
        guidance=c.guidance,
        width=c.width,
        height=c.height,
        num_images=c.batch,
        seed=c.seed,
        strength=c.strength,
        image=c.image,
        mask=c.mask,
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def clean_device(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure_cell(engine: Engine, cell: Cell, *, reused_engine: bool = False) -> CellResult:
    """Run ``cell`` on ``engine``; raises on failure (the runner turns that into a failed cell)."""
    config = cell.config
    request = request_from_config(config)
    started = now()
    clean_device(engine.device)
    # 1. Warm-up (not recorded); the first call carries compile / autotune / lazy-init cost.
    first_call_s = None
    for i in range(config.warmup):
        t0 = time.perf_counter()
        engine.generate(request)
        if i == 0:
            first_call_s = time.perf_counter() - t0
    clean_device(engine.device)
    # 2. Repeats, with resource sampling around them.
    results: list[GenerationResult] = []
    sampler = ResourceSampler(engine.device)
    with sampler.track() as resources:
        for _ in range(config.repeats):
            results.append(engine.generate(request))
    cuda_peak = torch.cuda.max_memory_allocated(engine.device) if engine.device.type == "cuda" else None
    cuda_peak_reserved = torch.cuda.max_memory_reserved(engine.device) if engine.device.type == "cuda" else None
    # 3. Samples and metrics.
    timings = [r.timing for r in results]
    images = timings[0].images
    samples: dict[str, list[float]] = {
        "call_s": [t.total_s for t in timings],
        "s_per_image": [t.s_per_image for t in timings],
        "text_encode_s": [t.text_encode_s for t in timings],
        "vae_decode_s": [t.vae_decode_s for t in timings],
        "denoise_s": [t.denoise_s for t in timings],
        "step_s": [s for t in timings for s in t.steps_s],
    }
    if any(t.vae_encode_s for t in timings):
        samples["vae_encode_s"] = [t.vae_encode_s for t in timings]
    if any(t.steps_gpu_s for t in timings):
        samples["step_gpu_s"] = [s for t in timings for s in t.steps_gpu_s]
    if all(t.total_gpu_s is not None for t in timings):
        samples["call_gpu_s"] = [t.total_gpu_s for t in timings]  # type: ignore[misc]
    call_s = statistics.median(samples["call_s"])
    n_steps = len(timings[0].steps_s)
    metrics: dict[str, float] = {
        "s_per_call": call_s,
        "s_per_image": call_s / images,
        "images_per_s": images / call_s,
        "steps_per_s": n_steps / statistics.median(samples["denoise_s"]) if n_steps else float("nan"),
        "step_median_s": statistics.median(samples["step_s"]) if samples["step_s"] else float("nan"),
        "text_encode_s": statistics.median(samples["text_encode_s"]),
        "vae_decode_s": statistics.median(samples["vae_decode_s"]),
        "load_s": engine.load_info.seconds,
        "unet_evals": float(n_steps),
        "host_peak_rss_bytes": float(resources.host_peak_rss),
    }
    if "vae_encode_s" in samples:
        metrics["vae_encode_s"] = statistics.median(samples["vae_encode_s"])
    peaks = [t.peak_allocated for t in timings if t.peak_allocated is not None]
    reserved = [t.peak_reserved for t in timings if t.peak_reserved is not None]
    if peaks or cuda_peak is not None:
        metrics["peak_allocated_bytes"] = float(max(peaks) if peaks else cuda_peak)  # type: ignore[type-var]
    if reserved or cuda_peak_reserved is not None:
        metrics["peak_reserved_bytes"] = float(max(reserved) if reserved else cuda_peak_reserved)  # type: ignore[type-var]
    if resources.nvml_peak_used is not None:
        metrics["nvml_used_bytes"] = float(resources.nvml_peak_used)
    if resources.energy_j is not None and resources.energy_j > 0:
        metrics["energy_j_per_image"] = resources.energy_j / (images * config.repeats)
        metrics["images_per_kj"] = 1e3 / metrics["energy_j_per_image"]
    if first_call_s is not None:
        metrics["first_call_s"] = first_call_s
        if engine.optimizations.compile:
            metrics["compile_s"] = max(0.0, first_call_s - call_s)
    flops = _flops_per_call(engine, results[0], n_steps)
    if flops:
        metrics["flops_per_image"] = flops / images
        metrics["achieved_tflops"] = flops / call_s / 1e12
    # 4. Artifacts: first image (thumbnail) and one call's timeline.
    artifacts: dict[str, bytes] = {"timeline.json": json.dumps(timings[-1].timeline).encode()}
    if results[0].images:
        img = results[0].images[0].copy()
        img.thumbnail((THUMBNAIL, THUMBNAIL))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        artifacts["image.png"] = buf.getvalue()
    settings = dict(results[0].settings, engine_reused=reused_engine, repeats=config.repeats, warmup=config.warmup)
    return CellResult(
        suite=cell.suite,
        labels=cell.labels,
        settings=settings,
        metrics=metrics,
        samples=samples,
        artifacts=artifacts,
        started_at=started,
        finished_at=now(),
    )


def _flops_per_call(engine: Engine, result: GenerationResult, unet_evals: int) -> float | None:
    """FLOPs of one call from the meta-device count (None when the architecture can't be counted)."""
    from diffprof.flops import pipeline_flops

    s = result.settings
    try:
        breakdown = pipeline_flops(
            engine.base,
            width=s["width"],
            height=s["height"],
            batch=s["batch"],
            guidance=s["guidance"] > 1,
            encode=s["task"] != "txt2img",
        )
    except Exception:  # counting is a bonus; never fail a measured cell over it
        return None
    return float(breakdown.per_call(unet_evals, decode=bool(result.images), encode=s["task"] != "txt2img"))
