"""Every metric a cell stores, checked exactly: the pure derivation on known readings, and
measure_cell end to end on tiny-sd with a fake clock that moves only inside each component."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from diffprof.clock import FakeClock
from diffprof.config import RunConfig
from diffprof.device import DevicePeaks
from diffprof.engine import CallTiming, Engine
from diffprof.flops import pipeline_flops
from diffprof.profiler import Profiler
from diffprof.suites.base import Cell
from diffprof.suites.derive import Measurements, derive_metrics
from diffprof.suites.measure import measure_cell, thumbnail_png

MS = 1_000_000  # ns


def timing(total_ms: float, steps_ms: list[float], *, images: int = 2, text_ms: float = 4.0, vae_ms: float = 20.0, **kw) -> CallTiming:
    return CallTiming(total_s=total_ms / 1e3, images=images, text_encode_s=text_ms / 1e3, vae_decode_s=vae_ms / 1e3, steps_s=[s / 1e3 for s in steps_ms], **kw)


def same(value: float) -> object:
    """Equal up to float rounding (the median interpolates; seconds are ns / 1e9)."""
    return pytest.approx(value, rel=1e-12, abs=0)


# ---------------------------------------------------------------------------------------------
# derive_metrics: known readings in, every formula checked


def test_time_metrics_are_medians_of_the_repeats():
    calls = [timing(40, [1, 2, 3], vae_ms=30), timing(20, [1, 2, 3], vae_ms=10, text_ms=2), timing(24, [1, 2, 5], vae_ms=20, text_ms=9)]
    metrics, samples = derive_metrics(Measurements(timings=calls, load_s=1.25, host_peak_rss=123))
    assert samples["call_s"] == [0.040, 0.020, 0.024] and samples["step_s"] == [0.001, 0.002, 0.003] * 2 + [0.001, 0.002, 0.005]
    assert metrics["s_per_call"] == same(0.024)  # the median call, not the mean (28 ms) nor the last
    assert metrics["s_per_image"] == same(0.024 / 2) and metrics["images_per_s"] == same(2 / 0.024)
    assert metrics["steps_per_s"] == same(3 / 0.006)  # median denoising loop: 6, 6, 8 ms
    assert metrics["step_median_s"] == same(0.002)
    assert metrics["text_encode_s"] == same(0.004) and metrics["vae_decode_s"] == same(0.020)
    assert metrics["unet_evals"] == 3.0 and metrics["load_s"] == 1.25 and metrics["host_peak_rss_bytes"] == 123.0
    assert samples["s_per_image"] == [same(0.020), same(0.010), same(0.012)]
    for absent in ("vae_encode_s", "first_call_s", "compile_s", "flops_per_image", "achieved_tflops", "mfu", "energy_j_per_image",
                   "images_per_kj", "peak_allocated_bytes", "nvml_used_bytes"):
        assert absent not in metrics, absent


def test_an_even_number_of_repeats_takes_the_middle_pair():
    metrics, _ = derive_metrics(Measurements(timings=[timing(10, [1]), timing(30, [3]), timing(20, [2]), timing(90, [9])], load_s=0, host_peak_rss=0))
    assert metrics["s_per_call"] == same(0.025) and metrics["step_median_s"] == same(0.0025)


def test_first_call_and_compile_time():
    calls = [timing(30, [1, 2, 3])]
    eager, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, first_call_s=2.5))
    assert eager["first_call_s"] == 2.5 and "compile_s" not in eager  # nothing compiled: a slow first call is lazy init
    compiled, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, first_call_s=2.5, compiled=True))
    assert compiled["compile_s"] == same(2.5 - 0.030)
    faster, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, first_call_s=0.01, compiled=True))
    assert faster["compile_s"] == 0.0  # a first call faster than the median: no negative compile time


def test_flops_and_mfu_from_given_counts_and_peaks():
    calls = [timing(40, [4, 4]), timing(50, [5, 5]), timing(60, [6, 6])]
    peaks = DevicePeaks(name="fake", kind="cuda", matmul_flops={"fp16": 500e12, "bf16": 400e12})
    m = Measurements(timings=calls, load_s=0, host_peak_rss=0, flops_per_call=3.2e12, unet_flops=1.6e12, peaks=peaks, precision="bf16")
    metrics, _ = derive_metrics(m)
    assert metrics["flops_per_image"] == same(3.2e12 / 2)
    assert metrics["achieved_tflops"] == same(3.2e12 / 0.050 / 1e12)  # per median call
    assert metrics["mfu"] == same(1.6e12 / 0.005 / 400e12)  # one UNet evaluation per median step, against the bf16 ceiling
    no_peaks, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, flops_per_call=3.2e12, unet_flops=1.6e12))
    assert "mfu" not in no_peaks and no_peaks["achieved_tflops"] == metrics["achieved_tflops"]


def test_energy_is_spread_over_every_image_of_every_repeat():
    calls = [timing(30, [1]) for _ in range(4)]  # 4 repeats x 2 images
    metrics, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, energy_j=240.0, nvml_peak_used=7 << 30))
    assert metrics["energy_j_per_image"] == same(240.0 / 8) and metrics["images_per_kj"] == same(1e3 / 30.0)
    assert metrics["nvml_used_bytes"] == float(7 << 30)
    zero, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, energy_j=0.0))
    assert "energy_j_per_image" not in zero  # a counter that did not move measured nothing


def test_memory_peaks_prefer_the_call_records():
    calls = [timing(30, [1], peak_allocated=5, peak_reserved=8), timing(30, [1], peak_allocated=7, peak_reserved=6)]
    metrics, _ = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0, allocated_peak=100, reserved_peak=100))
    assert (metrics["peak_allocated_bytes"], metrics["peak_reserved_bytes"]) == (7.0, 8.0)
    fallback, _ = derive_metrics(Measurements(timings=[timing(30, [1])], load_s=0, host_peak_rss=0, allocated_peak=100, reserved_peak=120))
    assert (fallback["peak_allocated_bytes"], fallback["peak_reserved_bytes"]) == (100.0, 120.0)


def test_a_graphed_loop_stands_in_with_its_mean_step():
    """A CUDA graph replays the whole loop as one launch: no per-step records, one loop span."""
    calls = [CallTiming(total_s=0.5, images=1, loop_s=0.4, loop_steps=20, total_gpu_s=0.45, vae_encode_s=0.01) for _ in range(3)]
    metrics, samples = derive_metrics(Measurements(timings=calls, load_s=0, host_peak_rss=0))
    assert samples["step_s"] == [same(0.02)] * 3 and metrics["step_median_s"] == same(0.02)
    assert metrics["steps_per_s"] == same(20 / 0.4) and metrics["unet_evals"] == 20.0
    assert samples["call_gpu_s"] == [0.45] * 3 and metrics["vae_encode_s"] == same(0.01)


def test_no_timed_call_is_an_error():
    with pytest.raises(ValueError, match="at least one timed call"):
        derive_metrics(Measurements(timings=[], load_s=0, host_peak_rss=0))


def test_thumbnail_fits_and_keeps_the_aspect():
    png = thumbnail_png(Image.new("RGB", (512, 256), (10, 20, 30)))
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (256, 128) and img.getpixel((0, 0)) == (10, 20, 30)
    assert Image.open(io.BytesIO(thumbnail_png(Image.new("RGB", (64, 48))))).size == (64, 48)  # never enlarged


# ---------------------------------------------------------------------------------------------
# measure_cell end to end: a fake clock that moves only inside the text encoder, UNet and VAE


TEXT_NS = 4 * MS
UNET_NS = [1 * MS, 2 * MS, 6 * MS]  # per loop iteration: Heun at 2 steps runs 3 (2 x 2 - 1)
VAE_NS = [50 * MS, 30 * MS, 10 * MS, 14 * MS]  # warm-up call, then the three timed repeats
FIRST_CALL_EXTRA_NS = 900 * MS  # lazy init on the very first UNet evaluation


class ComponentCosts:
    """Forward pre-hooks registered after the engine's own: each runs inside its component's span
    and advances the clock by that component's cost, so every span's length is known."""

    def __init__(self, engine: Engine, clock: FakeClock) -> None:
        self.clock = clock
        self.call = -1
        self.step = 0
        pipe = engine.base
        self.handles = [
            pipe.text_encoder.register_forward_pre_hook(self.text),
            pipe.unet.register_forward_pre_hook(self.unet),
            pipe.vae.decoder.register_forward_pre_hook(self.vae),
        ]

    def text(self, *_: object) -> None:  # the first component of each call
        self.call += 1
        self.step = 0
        self.clock.advance(TEXT_NS)

    def unet(self, *_: object) -> None:
        if self.call == 0 and self.step == 0:
            self.clock.advance(FIRST_CALL_EXTRA_NS)
        self.clock.advance(UNET_NS[self.step])
        self.step += 1

    def vae(self, *_: object) -> None:
        self.clock.advance(VAE_NS[self.call])

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def test_measure_cell_derives_every_metric_exactly_from_the_clock():
    clock = FakeClock()
    engine = Engine.load("tiny-sd", device="cpu", profiler=Profiler("standard", device="cpu", clock=clock, measure_overhead=False))
    assert engine.clock is clock and engine.load_info.seconds == 0.0  # loading read the same (unmoved) clock
    costs = ComponentCosts(engine, clock)
    config = RunConfig.from_mapping(dict(model="tiny-sd", device="cpu", width=32, height=32, scheduler="heun", steps=2, guidance=1.0,
                                         batch=2, repeats=3, warmup=1, threads=1, quality=["none"]))
    try:
        result = measure_cell(engine, Cell("steps", {"steps": 2}, config))
    finally:
        costs.remove()
    assert costs.call == 3  # one warm-up and three repeats, one text encoding each (guidance 1: no negative prompt)
    unet = sum(UNET_NS)
    calls = [TEXT_NS + unet + vae for vae in VAE_NS[1:]]  # 43, 23, 27 ms: the median is not the mean
    m, s = result.metrics, result.samples
    assert s["call_s"] == [same(c / 1e9) for c in calls]
    assert s["step_s"] == [same(n / 1e9) for n in UNET_NS] * 3 and s["denoise_s"] == [same(unet / 1e9)] * 3
    assert m["s_per_call"] == same(0.027) and m["s_per_image"] == same(0.0135) and m["images_per_s"] == same(2 / 0.027)
    assert m["steps_per_s"] == same(3 / 0.009) and m["step_median_s"] == same(0.002) and m["unet_evals"] == 3.0
    assert m["text_encode_s"] == same(0.004) and m["vae_decode_s"] == same(0.014)
    assert m["first_call_s"] == same((TEXT_NS + FIRST_CALL_EXTRA_NS + unet + VAE_NS[0]) / 1e9) and "compile_s" not in m
    assert m["load_s"] == 0.0 and m["host_peak_rss_bytes"] > 0
    flops = pipeline_flops(engine.base, width=32, height=32, batch=2, guidance=False)
    assert m["flops_per_image"] == same(flops.per_call(3) / 2)
    assert m["achieved_tflops"] == same(flops.per_call(3) / 0.027 / 1e12)
    assert "mfu" not in m and "energy_j_per_image" not in m  # CPU: no matmul ceiling, no energy counter
    timeline = result.artifacts["timeline.json"]
    assert b'"denoising_step"' in timeline and Image.open(io.BytesIO(result.artifacts["image.png"])).size == (32, 32)
    assert result.settings["repeats"] == 3 and result.settings["scheduler"] == "heun" and result.settings["batch"] == 2


def test_measure_cell_reads_the_clock_it_is_given():
    """measure_cell times the first call with the clock passed in, the engine every call with its own."""
    engine_clock, cell_clock = FakeClock(), FakeClock()
    engine = Engine.load("tiny-sd", device="cpu", clock=engine_clock)
    assert engine.profiler.clock is engine_clock  # the profiler it built reads the engine's clock

    def unet(*_: object) -> None:
        cell_clock.advance(7 * MS)
        engine_clock.advance(3 * MS)

    handle = engine.base.unet.register_forward_pre_hook(unet)
    config = RunConfig.from_mapping(dict(model="tiny-sd", device="cpu", width=32, height=32, scheduler="euler", steps=1, repeats=1, warmup=1,
                                         threads=1, quality=["none"]))
    try:
        result = measure_cell(engine, Cell("steps", {"steps": 1}, config), clock=cell_clock)
    finally:
        handle.remove()
    assert result.metrics["first_call_s"] == same(0.007) and result.metrics["s_per_call"] == same(0.003)


def test_every_derived_metric_is_in_the_registry_with_its_samples():
    """Store, compare and tables read the metric registry: a name it lacks would be shown raw and
    compared without a direction; a sample series it points at must be stored beside the metric."""
    from diffprof.metrics import known, metric

    calls = [timing(30, [1, 2], vae_encode_s=0.01, peak_allocated=5, peak_reserved=6, steps_gpu_s=[0.001, 0.002], total_gpu_s=0.03)
             for _ in range(3)]
    peaks = DevicePeaks(name="fake", kind="cuda", matmul_flops={"fp16": 1e15})
    metrics, samples = derive_metrics(Measurements(
        timings=calls, load_s=1.0, host_peak_rss=1, first_call_s=5.0, compiled=True, nvml_peak_used=2, energy_j=9.0,
        flops_per_call=1e12, unet_flops=4e11, peaks=peaks, precision="fp16",
    ))
    assert len(metrics) == 21 and all(known(name) for name in metrics), [n for n in metrics if not known(n)]
    assert all(metric(n).sample in samples for n in metrics if metric(n).sample), {n: metric(n).sample for n in metrics}
