"""Measure one cell on a loaded engine: warm-up, repeats, raw samples, derived metrics, quality.

The protocol (issue #4): warm-up calls are not recorded; each of N repeats keeps its raw
samples; memory state is cleaned before the cell; CUDA is synchronized before clocks are read
(the engine does this per call); the cell's statistics are medians of the kept samples.

Quality (issue #5) is scored after the timed repeats, on images of its own: ``quality_prompts``
fixed (prompt, seed) pairs generated with the cell's settings, so it never adds to a measured
time and every cell of every run is scored on the same prompts and noise (paired comparisons).
Reference solves for convergence are kept in a :class:`QualityCache`, one per run.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffprof.config import RunConfig
from diffprof.engine import Engine, GenerationRequest, GenerationResult
from diffprof.fileio import write_bytes_atomic
from diffprof.profiler.samplers import ResourceSampler
from diffprof.results import CellResult
from diffprof.suites.base import Cell

if TYPE_CHECKING:
    from diffprof.quality.clip_score import ClipScorer

THUMBNAIL = 256


def request_from_config(c: RunConfig) -> GenerationRequest:
    return c.to_request()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def clean_device(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure_cell(engine: Engine, cell: Cell, *, reused_engine: bool = False, quality: QualityCache | None = None) -> CellResult:
    """Run ``cell`` on ``engine``; raises on failure (the runner turns that into a failed cell).

    ``quality`` keeps reference solves and CLIP models between cells; pass one per run (without
    it each cell solves its own references, unless ``config.reference_cache`` names a folder).
    """
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
        # a graphed loop has no per-step records: its mean step stands in, one per call
        "step_s": [s for t in timings for s in (t.steps_s or [t.step_median_s])],
    }
    if any(t.vae_encode_s for t in timings):
        samples["vae_encode_s"] = [t.vae_encode_s for t in timings]
    if any(t.steps_gpu_s for t in timings):
        samples["step_gpu_s"] = [s for t in timings for s in t.steps_gpu_s]
    if all(t.total_gpu_s is not None for t in timings):
        samples["call_gpu_s"] = [t.total_gpu_s for t in timings]  # type: ignore[misc]
    call_s = statistics.median(samples["call_s"])
    n_steps = timings[0].n_steps
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
    peak = max(peaks) if peaks else cuda_peak
    if peak is not None:
        metrics["peak_allocated_bytes"] = float(peak)
    peak_reserved = max(reserved) if reserved else cuda_peak_reserved
    if peak_reserved is not None:
        metrics["peak_reserved_bytes"] = float(peak_reserved)
    if resources.nvml_peak_used is not None:
        metrics["nvml_used_bytes"] = float(resources.nvml_peak_used)
    if resources.energy_j is not None and resources.energy_j > 0:
        metrics["energy_j_per_image"] = resources.energy_j / (images * config.repeats)
        metrics["images_per_kj"] = 1e3 / metrics["energy_j_per_image"]
    if first_call_s is not None:
        metrics["first_call_s"] = first_call_s
        if engine.optimizations.compile:
            metrics["compile_s"] = max(0.0, first_call_s - call_s)
    flops, unet_flops = _flops_per_call(engine, results[0], n_steps)
    if flops:
        metrics["flops_per_image"] = flops / images
        metrics["achieved_tflops"] = flops / call_s / 1e12
    if unet_flops and engine.device.type == "cuda":
        from diffprof.device import device_peaks, mfu

        value = mfu(unet_flops, metrics["step_median_s"], device_peaks(engine.device), engine.precision)
        if value is not None:
            metrics["mfu"] = value  # of the denoising step (UNet + guidance + scheduler) vs measured matmul peak
    # 4. Artifacts: first image (thumbnail) and one call's timeline.
    artifacts: dict[str, bytes] = {"timeline.json": json.dumps(timings[-1].timeline).encode()}
    if results[0].images:
        img = results[0].images[0].copy()
        img.thumbnail((THUMBNAIL, THUMBNAIL))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        artifacts["image.png"] = buf.getvalue()
    settings = dict(results[0].settings, engine_reused=reused_engine, repeats=config.repeats, warmup=config.warmup)
    # 5. Quality, after the timed repeats so it adds nothing to a measured time.
    names = quality_metrics(config, cell.suite)
    if names:
        score = score_quality(engine, config, names, quality if quality is not None else QualityCache(config.reference_cache))
        metrics.update(score.metrics)
        samples.update(score.samples)
        settings["quality"] = score.about
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


def _flops_per_call(engine: Engine, result: GenerationResult, unet_evals: int) -> tuple[float | None, float | None]:
    """FLOPs of one call and of one UNet evaluation, from the meta-device count (None when the
    architecture can't be counted)."""
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
        return None, None
    return float(breakdown.per_call(unet_evals, decode=bool(result.images), encode=s["task"] != "txt2img")), float(breakdown.unet_per_eval)


# ---------------------------------------------------------------------------------------------
# Quality

#: Suites whose question is about quality: ``quality: [auto]`` scores their cells and no others
#: (a resolutions or batch sweep should not pay for images it does not need).
AUTO_QUALITY_SUITES = frozenset({"quality", "guidance", "tune"})
#: On shapes-sd adherence needs no reference solve, so ``auto`` also scores the suites whose axis
#: changes what is drawn (the quick suite then shows real quality beside speed).
AUTO_ADHERENCE_SUITES = AUTO_QUALITY_SUITES | {"schedulers", "steps", "precision", "generation", "pipelines"}
#: The built-in model trained on shapes scenes; ``auto`` scores it by prompt adherence.
SHAPES_MODEL = "shapes-sd"
#: Quality seeds are ``QUALITY_SEED + i``: apart from the timing seed (default 0) and fixed, so
#: every cell of every run scores the same noise.
QUALITY_SEED = 10_000
#: Seed of the scene draw behind the shapes prompts; training draws start at small seeds.
SCENE_SEED = 20_261_126


def quality_metrics(config: RunConfig, suite: str) -> tuple[str, ...]:
    """The metric families to score for a cell of ``suite`` (``auto`` resolved), in a fixed order."""
    names = list(config.quality)
    if not names or names == ["none"]:
        return ()
    if names == ["auto"]:
        if config.model == SHAPES_MODEL and suite in AUTO_ADHERENCE_SUITES:
            return ("adherence",)  # cheap (a few calls, no reference solve): worth it wherever it means something
        if suite not in AUTO_QUALITY_SUITES:
            return ()
        return ("adherence",) if config.model == SHAPES_MODEL else ("convergence",)
    return tuple(n for n in ("adherence", "convergence", "clip") if n in names)


def quality_pairs(config: RunConfig, metrics: Sequence[str]) -> list[tuple[str, int]]:
    """The ``(prompt, seed)`` pairs a cell is scored on.

    Adherence needs shapes prompts, so when it is scored the prompts are random shapes scenes
    (a fixed draw; the first k of n pairs are the same whatever n is); otherwise every pair
    uses the cell's own prompt with its own seed.
    """
    n = config.quality_prompts
    if "adherence" in metrics:
        from diffprof.quality.shapes import prompt_for, random_scene

        rng = np.random.default_rng(SCENE_SEED)
        prompts = [prompt_for(random_scene(rng)) for _ in range(n)]
    else:
        prompts = [config.prompt] * n
    return [(p, QUALITY_SEED + i) for i, p in enumerate(prompts)]


@dataclass
class Reference:
    """One reference solve: the decoded image (uint8 HWC) and the final latents (float32, CPU)."""

    image: np.ndarray
    latents: torch.Tensor | None


class QualityCache:
    """What quality scoring keeps between cells: reference solves and loaded CLIP models.

    References live in memory for the cache's lifetime (one run) and, with ``folder``, on disk
    as ``<sha1 of the key>.npz``, so later runs and isolated workers skip the solve. The key
    holds everything that decides the reference image (model, weights, precision, device type,
    task, prompt, seed, size, guidance, reference scheduler and steps, diffusers version); a
    local model folder whose weights change needs its cached references deleted.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else None
        self.references: dict[str, Reference] = {}
        self.clip_scorers: dict[str, ClipScorer] = {}
        #: How many references were solved (not found in memory or on disk): what caching saved.
        self.solved = 0

    def reference(self, key: dict[str, Any], solve: Callable[[], Reference]) -> Reference:
        """The reference for ``key``: from memory, else from disk, else ``solve()`` (then stored)."""
        blob = json.dumps(key, sort_keys=True, default=str)
        digest = hashlib.sha1(blob.encode()).hexdigest()
        if digest in self.references:
            return self.references[digest]
        path = self.folder / f"{digest}.npz" if self.folder else None
        ref = _load_reference(path, blob) if path is not None else None
        if ref is None:
            ref = solve()
            self.solved += 1
            if path is not None:
                _save_reference(path, blob, ref)
        self.references[digest] = ref
        return ref

    def clip_scorer(self, model: str, device: torch.device) -> ClipScorer:
        if model not in self.clip_scorers:
            from diffprof.quality.clip_score import ClipScorer

            self.clip_scorers[model] = ClipScorer(model, device=device)
        return self.clip_scorers[model]


def _load_reference(path: Path, key: str) -> Reference | None:
    """A reference saved by :func:`_save_reference`, or None when absent, unreadable or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            latents = torch.from_numpy(data["latents"].copy()) if "latents" in data.files else None
            return Reference(image=data["image"].copy(), latents=latents)
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged file costs a re-solve, never the cell


def _save_reference(path: Path, key: str, ref: Reference) -> None:
    """Write atomically so a concurrent reader never sees half a file."""
    arrays: dict[str, Any] = {"key": np.array(key), "image": ref.image}
    if ref.latents is not None:
        arrays["latents"] = ref.latents.numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def reference_key(engine: Engine, config: RunConfig, prompt: str, seed: int, width: int, height: int) -> dict[str, Any]:
    """Everything that decides a reference solve's image (see :class:`QualityCache`)."""
    import diffusers

    key: dict[str, Any] = {
        "model": engine.model, "weights": config.weights, "source": engine.load_info.source, "precision": engine.precision,
        "device": engine.device.type, "task": config.task, "prompt": prompt, "negative_prompt": config.negative_prompt,
        "seed": seed, "width": width, "height": height, "guidance": float(config.guidance),
        "scheduler": config.reference_scheduler, "steps": config.reference_steps, "diffusers": diffusers.__version__,
    }
    if config.task != "txt2img":
        key.update(strength=config.strength, image=config.image, mask=config.mask)
    return key


def _latents(result: GenerationResult) -> torch.Tensor | None:
    return result.latents.detach().to("cpu", torch.float32).clone() if result.latents is not None else None


@dataclass
class QualityScore:
    """A cell's quality: metric means, the per-image values behind them, and what was scored."""

    metrics: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    about: dict[str, Any] = field(default_factory=dict)


def score_quality(engine: Engine, config: RunConfig, metrics: Sequence[str], cache: QualityCache) -> QualityScore:
    """Generate the quality images with the cell's settings and score them.

    Phases: 1. one call per (prompt, seed) at batch 1; 2. adherence per image against its
    prompt; 3. convergence against the cached (or newly solved) reference of each pair; 4. CLIP
    score per (image, prompt). Metric names: ``adherence``, ``psnr_db``, ``ssim``,
    ``latent_rel_error``, ``clip_score``; ``samples`` keep one value per image.
    """
    pairs = quality_pairs(config, metrics)
    base = replace(request_from_config(config), num_images=1)
    # 1. The cell's own images, batch 1, one per pair.
    outputs = [engine.generate(replace(base, prompt=p, seed=s)) for p, s in pairs]
    images = [o.images[0] for o in outputs]
    width, height = outputs[0].settings["width"], outputs[0].settings["height"]
    out = QualityScore(about={
        "metrics": list(metrics),
        "prompts": len(pairs),
        "prompt_set": "shapes scenes" if "adherence" in metrics else "the cell prompt",
        "seeds": [pairs[0][1], pairs[-1][1]],
    })
    # 2. Adherence: the pixel detector reads the scene back and checks the prompt's five attributes.
    if "adherence" in metrics:
        from diffprof.quality.detector import adherence

        values = [adherence(image, prompt) for image, (prompt, _) in zip(images, pairs)]
        out.samples["adherence"] = values
        out.metrics["adherence"] = float(np.mean(values))
    # 3. Convergence against the reference solve of each pair.
    if "convergence" in metrics:
        from diffprof.quality.images import to_uint8_rgb
        from diffprof.quality.metrics import Convergence

        def solve(prompt: str, seed: int) -> Reference:
            ref = engine.generate(replace(base, prompt=prompt, seed=seed, scheduler=config.reference_scheduler, steps=config.reference_steps))
            return Reference(image=to_uint8_rgb(ref.images[0]), latents=_latents(ref))

        refs = [cache.reference(reference_key(engine, config, p, s, width, height), partial(solve, p, s)) for p, s in pairs]
        seeds = [s for _, s in pairs]
        with_latents = all(r.latents is not None for r in refs) and all(o.latents is not None for o in outputs)
        convergence = Convergence(
            {s: r.image for s, r in zip(seeds, refs)},
            {s: r.latents for s, r in zip(seeds, refs)} if with_latents else None,
        )
        result = convergence.score(
            {s: image for s, image in zip(seeds, images)},
            {s: _latents(o) for s, o in zip(seeds, outputs)} if with_latents else None,
        )
        out.metrics.update(result.metrics())
        out.samples["psnr_db"] = [result.psnr[s] for s in seeds]
        out.samples["ssim"] = [result.ssim[s] for s in seeds]
        if result.latent_error:
            out.samples["latent_rel_error"] = [result.latent_error[s] for s in seeds]
        out.about["reference"] = f"{config.reference_scheduler}, {config.reference_steps} steps, {engine.precision}"
    # 4. CLIP score of each image against its own prompt.
    if "clip" in metrics:
        if not config.clip_model:
            from diffprof.errors import ConfigError

            raise ConfigError("quality metric clip needs a CLIP model", "set clip_model (--clip-model) to a local CLIP folder or a hub id")
        scorer = cache.clip_scorer(config.clip_model, engine.device)
        values = scorer.score(images, [p for p, _ in pairs])
        out.samples["clip_score"] = values
        out.metrics["clip_score"] = float(np.mean(values))
        out.about["clip_model"] = config.clip_model
    return out
