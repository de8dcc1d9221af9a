"""Per-call timing from profiler records: the per-step series line up step by step."""

from __future__ import annotations

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
