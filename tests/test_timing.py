"""Per-call timing from profiler records: the per-step series line up step by step."""

from __future__ import annotations

import math

import pytest

from diffprof.engine.timing import timing_from_records
from diffprof.profiler import Profiler


def test_unet_times_line_up_with_their_steps(clock):
    """Step i's UNet span is nested in step i, so it can never exceed it; the series came out last
    step first (a depth-first walk), which put step 0's slow first UNet call beside the last step."""
    profiler = Profiler("minimal", clock=clock, measure_overhead=False)
    unet_ns = [900, 100, 300]
    with profiler.profile_operation("diffusion_image_generation", "model_inference") as outer:
        for i, cost in enumerate(unet_ns):
            with profiler.profile_operation("denoising_step", "model_inference", step=i):
                with profiler.profile_operation("unet", "model_inference"):
                    clock.advance(cost)
                clock.advance(10)  # scheduler step
    timing = timing_from_records(outer, profiler.records, clock.now - outer.start_ns, 1)
    assert [round(s * 1e9) for s in timing.steps_s] == [910, 110, 310]
    assert [round(s * 1e9) for s in timing.unet_s] == unet_ns


def test_step_median_and_rates():
    from diffprof.engine.timing import CallTiming

    t = CallTiming(total_s=0.05, images=2, text_encode_s=0.004, vae_decode_s=0.01, steps_s=[0.003, 0.001, 0.002, 0.010])
    assert t.step_median_s == pytest.approx(0.0025, rel=1e-12) and t.n_steps == 4 and t.denoise_s == pytest.approx(0.016)
    assert t.steps_per_s == pytest.approx(4 / 0.016) and t.s_per_image == 0.025 and t.other_s == pytest.approx(0.05 - 0.004 - 0.016 - 0.01)
    graphed = CallTiming(total_s=0.5, images=1, loop_s=0.4, loop_steps=20)
    assert graphed.step_median_s == pytest.approx(0.02) and graphed.denoise_s == 0.4 and graphed.n_steps == 20
    assert math.isnan(CallTiming(total_s=0.1, images=1).step_median_s)
