"""Measure one cell on a loaded engine: warm-up, repeats, raw samples, derived metrics, quality.

The protocol (issue #4): warm-up calls are not recorded; each of N repeats keeps its raw
samples; memory state is cleaned before the cell; CUDA is synchronized before clocks are read
(the engine does this per call); the cell's statistics are medians of the kept samples. A cell
measured in rounds (:mod:`~diffprof.suites.rounds`) comes here once per round with its share of the
repeats; it warms up in its first round and whenever its engine was loaded afresh (``--isolate``, an
evicted engine), and quality is scored in the first round only.

:func:`measure_cell` runs the phases and reads the clocks; each phase's arithmetic lives apart:
metrics from the readings in :mod:`~diffprof.suites.derive` (pure), FLOPs in :func:`count_flops`,
the thumbnail in :func:`thumbnail_png`, and quality, scored after the timed repeats on images of its
own, in :mod:`diffprof.quality.scoring`.
"""

from __future__ import annotations

import io
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from diffprof.clock import Clock
from diffprof.device import DevicePeaks, device_peaks
from diffprof.engine import Engine, GenerationRequest, GenerationResult
from diffprof.engine.devices import clean, peak_memory
from diffprof.profiler.probe import speed_probe
from diffprof.profiler.samplers import ResourceSample, ResourceSampler
from diffprof.quality.scoring import QualityCache, quality_metrics, score_quality
from diffprof.results import FLOPS_NOTE, CellResult
from diffprof.suites.base import Cell
from diffprof.suites.derive import Measurements, derive_metrics

#: Longest side of the stored first image, in pixels.
THUMBNAIL = 256


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure_cell(
    engine: Engine, cell: Cell, *, reused_engine: bool = False, quality: QualityCache | None = None, clock: Clock | None = None
) -> CellResult:
    """Run ``cell`` on ``engine``; raises on failure (the runner turns that into a failed cell).

    ``quality`` keeps reference solves and CLIP models between cells; pass one per run (without
    it each cell solves its own references, unless ``config.reference_cache`` names a folder).
    ``clock`` times the first call (default: the engine's, which also times every call).
    """
    config = cell.config
    request = config.to_request()
    started = now()
    # 1. Warm-up (not recorded); the first call carries compile / autotune / lazy-init cost. A later
    #    round on an engine that stayed loaded is warm already: it measures straight away.
    warm = cell.round is not None and cell.round.index > 1 and reused_engine
    first_call_s = warm_up(engine, request, 0 if warm else config.warmup, clock or engine.clock, settle=not reused_engine)
    # 2. Repeats (this round's share of them), with resource sampling around them; the trace of warm-up and repeats, if asked.
    #    The speed probe around them: how fast this machine ran this round (compare adjusts for it).
    probe_before = speed_probe(engine.device)
    results, resources = timed_repeats(engine, request, cell.calls)
    probe_s = math.sqrt(probe_before * speed_probe(engine.device))
    allocated_peak, reserved_peak = peak_memory(engine.device)
    if config.trace:
        write_trace(engine, cell, config.trace)
    # 3. Metrics, from the readings.
    timings = [r.timing for r in results]
    uncounted: list[str] = []
    flops, unet_flops = count_flops(engine, results[0], timings[0].denoiser_calls or timings[0].n_steps, why=uncounted)
    metrics, samples = derive_metrics(Measurements(
        timings=timings, load_s=engine.load_info.seconds, host_peak_rss=resources.host_peak_rss,
        first_call_s=first_call_s, compiled=bool(engine.optimizations.compile),
        allocated_peak=allocated_peak, reserved_peak=reserved_peak, nvml_peak_used=resources.nvml_peak_used, energy_j=resources.energy_j,
        flops_per_call=flops, unet_flops=unet_flops, peaks=matmul_peaks(engine) if unet_flops else None, precision=engine.precision,
    ))
    metrics["probe_s"] = probe_s
    # 4. Artifacts: first image (thumbnail) and one call's timeline.
    artifacts: dict[str, bytes] = {"timeline.json": json.dumps(timings[-1].timeline).encode()}
    if results[0].images:
        artifacts["image.png"] = thumbnail_png(results[0].images[0])
    settings = dict(results[0].settings, engine_reused=reused_engine, repeats=config.repeats, warmup=config.warmup)
    if uncounted:
        settings[FLOPS_NOTE] = f"FLOPs not counted ({uncounted[0]}): no FLOPs, MFU or TFLOP/s for this model"
    # 5. Quality, after the timed repeats so it adds nothing to a measured time (once per cell).
    names = quality_metrics(config, cell.suite) if cell.round is None or cell.round.index == 1 else []
    if names:
        cache = quality if quality is not None else QualityCache(config.reference_cache)
        score = score_quality(engine, config, names, cache, request, timed=results[0])
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


#: On a GPU, warm-up goes on past ``config.warmup`` calls until a call agrees with the one before it
#: within this fraction: the first replays in a fresh process ran 5-11% slow on the H200 (SD 1.5
#: ``-O fast``: first rounds 0.342-0.362 s against 0.324-0.327 s in 5 of 9 processes, the cells after
#: them never), which made one round in three an outlier and the gate "too noisy" at 1%.
SETTLE_TOLERANCE = 0.02
#: At most this many extra warm-up calls, and no more once they have taken this many seconds.
SETTLE_MAX_CALLS = 6
SETTLE_MAX_S = 5.0


def settled(seconds: list[float], tolerance: float = SETTLE_TOLERANCE) -> bool:
    """Whether the last of these call times agrees with the one before it (the clock has settled)."""
    return len(seconds) >= 2 and abs(seconds[-1] - seconds[-2]) <= tolerance * min(seconds[-2:])


def warm_up(engine: Engine, request: GenerationRequest, calls: int, clock: Clock, *, settle: bool = True) -> float | None:
    """Run the warm-up calls on a clean device; the first one's seconds (None without warm-up).

    On a GPU a freshly loaded engine's warm-up settles (``settle``; :func:`settled`, at most
    :data:`SETTLE_MAX_CALLS` more calls or :data:`SETTLE_MAX_S`): only the first cell of a process
    ran slow, so a cell on an engine that already ran does ``calls``. On a CPU it is ``calls`` calls:
    this shared host's own noise is above the tolerance, and its calls are long."""
    clean(engine.device, reset_peaks=True)
    seconds: list[float] = []
    settle = settle and calls > 0 and engine.device.type == "cuda"
    extra_s = 0.0
    while len(seconds) < calls or (settle and not settled(seconds) and len(seconds) < calls + SETTLE_MAX_CALLS and extra_s < SETTLE_MAX_S):
        t0 = clock()
        engine.generate(request)
        seconds.append((clock() - t0) / 1e9)
        if len(seconds) > calls:
            extra_s += seconds[-1]
    clean(engine.device, reset_peaks=True)
    return seconds[0] if seconds else None


def timed_repeats(engine: Engine, request: GenerationRequest, repeats: int) -> tuple[list[GenerationResult], ResourceSample]:
    """The timed calls, with host (and NVML) memory and energy sampled around them."""
    results: list[GenerationResult] = []
    with ResourceSampler(engine.device).track() as resources:
        for _ in range(repeats):
            results.append(engine.generate(request))
    return results, resources


def count_flops(engine: Engine, result: GenerationResult, unet_evals: int, why: list[str] | None = None) -> tuple[float | None, float | None]:
    """FLOPs of one call and of one denoising step's denoiser evaluations, from the meta-device count
    (None when the architecture can't be counted).

    Registered families are counted from their architecture (:func:`~diffprof.flops.pipeline_flops`,
    the count ``estimate`` predicts with); pipelines no family covers (SANA-Sprint's transformer is
    SANA's, its call is not) and denoisers no builder covers from the input shapes the call recorded (:func:`~diffprof.flops.recorded_flops`). ``unet_evals`` is the call's denoiser
    evaluations; the step's FLOPs are theirs over the loop's steps (two per step when a pipeline
    runs its guidance halves apart). Where counting fails, ``why`` gets the reason."""
    from diffprof.flops import UnsupportedDenoiser, pipeline_flops, recorded_flops

    s = result.settings
    encode = s["task"] != "txt2img"
    try:
        try:
            if engine.anatomy.spec is None:  # a builder's call (its guidance, its inputs) is a family's, not this pipeline's
                raise UnsupportedDenoiser(engine.anatomy.pipeline_class)
            breakdown = pipeline_flops(engine.base, width=s["width"], height=s["height"], batch=s["batch"], guidance=s["guidance"] > 1,
                                       encode=encode, sequence_lengths=engine.preset.sequence_lengths if engine.preset else None)
        except UnsupportedDenoiser:
            breakdown = recorded_flops(engine.base, result.inputs, engine.anatomy.denoiser)
    except Exception as exc:  # counting is a bonus; never fail a measured cell over it, but say so (``why``)
        if why is not None:
            why.append(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}")
        return None, None
    steps = result.timing.n_steps or unet_evals
    per_step = breakdown.unet_per_eval * unet_evals / steps if steps else float(breakdown.unet_per_eval)
    total = breakdown.per_call(unet_evals, decode=bool(result.images), encode=encode)
    if s.get("text_embeddings") == "cached":  # the text cache answered: no text encoder ran
        total -= breakdown.text_encoder
    return float(total), float(per_step)


def matmul_peaks(engine: Engine) -> DevicePeaks | None:
    """The device's measured matmul ceilings for MFU: CUDA only (a CPU's ceiling says little about a
    diffusion step), probed once per device and cached."""
    return device_peaks(engine.device) if engine.device.type == "cuda" else None


def trace_path(cell: Cell, folder: str | Path) -> Path:
    """``FOLDER/<suite>-<labels>-<key>[-round-R].trace.json``: readable, and distinct for every cell
    and, for a cell measured in rounds, every round (rounds of other cells run in between)."""
    labels = "_".join(f"{k}-{v}" for k, v in cell.labels.items()) or "default"
    slug = re.sub(r"[^A-Za-z0-9.=+-]+", "_", f"{cell.suite}-{labels}")[:80]
    part = f"-round-{cell.round.index}" if cell.round is not None and cell.round.of > 1 else ""
    return Path(folder) / f"{slug}-{cell.key[:8]}{part}.trace.json"


def write_trace(engine: Engine, cell: Cell, folder: str | Path) -> Path:
    """This measurement's calls (its warm-up and repeats; one round's, in rounds) as one Chrome trace:
    spans, memory counters and, at ``detailed``, the kernel traces captured during it (not earlier cells')."""
    from diffprof.profiler import get_exporter

    profile = engine.profiler.profile()
    own = {r.labels["kernel_trace"] for r in profile.records if "kernel_trace" in r.labels}
    profile.trace_files = [p for p in profile.trace_files if p in own]
    path = trace_path(cell, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    return get_exporter("chrome").write(profile, path)


def thumbnail_png(image: Image.Image, size: int = THUMBNAIL) -> bytes:
    """``image`` scaled to fit ``size`` x ``size`` (aspect kept; never enlarged), as PNG bytes."""
    img = image.copy()
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
