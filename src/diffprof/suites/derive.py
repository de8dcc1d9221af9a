"""A cell's metrics and samples, derived from what was measured: a pure function, no measuring.

``measure_cell`` reads the clocks, counters and samplers; :func:`derive_metrics` turns those readings
into the stored numbers, so every formula below is tested on known inputs (``tests/test_derive.py``)
instead of only being checked ``> 0`` on real runs. Statistics are medians of the repeats
(:class:`~diffprof.stats.SampleStats`), so one noisy call moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from diffprof.device import DevicePeaks, mfu
from diffprof.engine.timing import CallTiming
from diffprof.stats import SampleStats


@dataclass
class Measurements:
    """What one cell measured: the timed repeats' per-call timings and what was read around them.

    Attributes:
        timings: one :class:`CallTiming` per timed repeat (the warm-up calls are not in it).
        load_s: seconds loading the engine took (reused engines report their original load).
        host_peak_rss: the host's peak resident set over the repeats, in bytes.
        first_call_s: the first warm-up call, when there was one (compile, autotune, lazy init).
        compiled: whether something was compiled, so ``first_call_s`` less a steady call is compile time.
        allocated_peak, reserved_peak: the CUDA allocator's peaks over the repeats, used when the
            call records carry none.
        nvml_peak_used: device memory in use as NVML saw it (allocator, context, other processes).
        energy_j: energy the device drew over all repeats.
        flops_per_call: FLOPs of one call (UNet evaluations, text encoders, VAE), when countable.
        unet_flops: FLOPs of one UNet evaluation (for MFU of the denoising step).
        peaks: the device's measured matmul ceilings (for MFU); None leaves MFU out.
        precision: which ceiling of ``peaks`` applies.
    """

    timings: Sequence[CallTiming]
    load_s: float
    host_peak_rss: int
    first_call_s: float | None = None
    compiled: bool = False
    allocated_peak: int | None = None
    reserved_peak: int | None = None
    nvml_peak_used: int | None = None
    energy_j: float | None = None
    flops_per_call: float | None = None
    unet_flops: float | None = None
    peaks: DevicePeaks | None = None
    precision: str = "fp32"


def samples_of(timings: Sequence[CallTiming]) -> dict[str, list[float]]:
    """The raw series behind a cell's statistics: one value per call, or per step for ``step_s``."""
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
    return samples


def median(values: Sequence[float]) -> float:
    return SampleStats.from_samples(values).median


def derive_metrics(m: Measurements) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The cell's metrics (names from the registry, :mod:`diffprof.metrics`) and the samples behind them.

    Per image and per second figures come from the median call; per step ones from the median step
    over every call's steps; ``steps_per_s`` from the median denoising loop; energy is spread over
    every image of every repeat. ``unet_evals`` (its old name, so stores of every version compare) is
    the call's denoiser evaluations: UNet or transformer forwards as the hooks counted them, else the
    loop's iterations (Heun and DPM2 evaluate twice in most of theirs; a pipeline that runs its
    guidance halves apart, twice per step).
    """
    if not m.timings:
        raise ValueError("a cell needs at least one timed call to derive metrics from")
    samples = samples_of(m.timings)
    images = m.timings[0].images
    n_steps = m.timings[0].n_steps
    call_s = median(samples["call_s"])
    metrics: dict[str, float] = {
        "s_per_call": call_s,
        "s_per_image": call_s / images,
        "images_per_s": images / call_s,
        "steps_per_s": n_steps / median(samples["denoise_s"]) if n_steps else float("nan"),
        "step_median_s": median(samples["step_s"]),  # nan when no call recorded a step
        "text_encode_s": median(samples["text_encode_s"]),
        "vae_decode_s": median(samples["vae_decode_s"]),
        "load_s": m.load_s,
        "unet_evals": float(m.timings[0].denoiser_calls or n_steps),
        "host_peak_rss_bytes": float(m.host_peak_rss),
    }
    if "vae_encode_s" in samples:
        metrics["vae_encode_s"] = median(samples["vae_encode_s"])
    # The call records' peaks are exact per call; the allocator's over the repeats stands in without them.
    peaks = [t.peak_allocated for t in m.timings if t.peak_allocated is not None]
    reserved = [t.peak_reserved for t in m.timings if t.peak_reserved is not None]
    peak = max(peaks) if peaks else m.allocated_peak
    if peak is not None:
        metrics["peak_allocated_bytes"] = float(peak)
    peak_reserved = max(reserved) if reserved else m.reserved_peak
    if peak_reserved is not None:
        metrics["peak_reserved_bytes"] = float(peak_reserved)
    if m.nvml_peak_used is not None:
        metrics["nvml_used_bytes"] = float(m.nvml_peak_used)
    if m.energy_j is not None and m.energy_j > 0:
        metrics["energy_j_per_image"] = m.energy_j / (images * len(m.timings))
        metrics["images_per_kj"] = 1e3 / metrics["energy_j_per_image"]
    if m.first_call_s is not None:
        metrics["first_call_s"] = m.first_call_s
        if m.compiled:
            metrics["compile_s"] = max(0.0, m.first_call_s - call_s)
    if m.flops_per_call:
        metrics["flops_per_image"] = m.flops_per_call / images
        metrics["achieved_tflops"] = m.flops_per_call / call_s / 1e12
    if m.unet_flops and m.peaks is not None:
        value = mfu(m.unet_flops, metrics["step_median_s"], m.peaks, m.precision)
        if value is not None:
            metrics["mfu"] = value  # of the denoising step (UNet + guidance + scheduler) vs measured matmul peak
    return metrics, samples
