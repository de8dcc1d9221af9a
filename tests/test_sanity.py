"""Sanity flags and the summary: results that cannot be right are named, noise is not mistaken for them."""

from __future__ import annotations

from test_report import build_run, make_cell

from diffprof.analysis.noise import scores_differ, times_differ, values_vary
from diffprof.analysis.pareto import judged_front
from diffprof.analysis.sanity import HostState, busy_host_flag, host_state, monotonic_flags, run_flags
from diffprof.report.summary import summarize
from diffprof.report.tables import suite_table
from diffprof.results import RunInfo
from diffprof.stats import SampleStats

SPREAD = (0.98, 1.0, 1.01, 1.02)


def test_more_steps_for_less_time_is_flagged_beyond_noise_only():
    cells = [make_cell("steps", {"steps": s}, t, spread=SPREAD) for s, t in ((10, 0.42), (20, 0.66), (50, 0.31))]
    (flag,) = monotonic_flags("steps", cells)
    assert flag.kind == "non_monotonic" and flag.suite == "steps"
    assert flag.message.startswith("50 steps took 310 ms per image, less than 10 steps (420 ms); 50 steps took 310 ms per image, less than 20 steps (660 ms)")
    assert "something else was using the machine" in flag.message and set(flag.cells) == {c.label for c in cells}
    # the same dip inside the noise of wide repeats is not a finding
    noisy = [make_cell("steps", {"steps": s}, t, spread=(0.6, 1.0, 1.4, 1.8)) for s, t in ((10, 0.42), (20, 0.40))]
    assert monotonic_flags("steps", noisy) == []
    assert suite_table("steps", cells).warnings == (flag.message,)


def test_pixels_and_batch_and_grids():
    sizes = [make_cell("resolutions", {"width": w, "height": w}, t, spread=SPREAD) for w, t in ((256, 0.3), (512, 0.2))]
    assert monotonic_flags("resolutions", sizes)[0].message.startswith("512×512 took 200 ms per image, less than 256×256 (300 ms)")
    batch = [make_cell("batch", {"batch": b}, t, batch=b, spread=SPREAD) for b, t in ((1, 1.15), (2, 0.67), (4, 0.9))]
    assert monotonic_flags("batch", batch)[0].message.startswith("batch 4 gave 1.11 images/s, less than batch 2 (1.49)")
    # a scheduler x steps grid is checked within each scheduler, and says which
    grid = [make_cell("quality", {"scheduler": s, "steps": n}, t, spread=SPREAD) for s, n, t in
            (("ddim", 10, 0.4), ("ddim", 20, 0.7), ("pndm", 10, 0.5), ("pndm", 20, 0.3))]
    (flag,) = monotonic_flags("quality", grid)
    assert flag.message.startswith("scheduler=pndm: 20 steps took 300 ms per image, less than 10 steps (500 ms)")
    plausible = [make_cell("steps", {"steps": s}, 0.02 * s, spread=SPREAD) for s in (10, 20, 30)]
    assert monotonic_flags("steps", plausible) == []


def test_a_busy_host_is_read_from_what_the_run_recorded():
    assert host_state({}) is None and host_state({"host_state": {"busy": "yes"}}) is None  # not recorded, or not a bool
    state = host_state({"host_state": {"busy": True, "reason": "load 3.1 on 2 cores"}})
    assert state == HostState(True, "load 3.1 on 2 cores")
    flag = busy_host_flag(state)
    assert flag.message == "the host was busy while this run measured (load 3.1 on 2 cores): timings include other work"
    assert busy_host_flag(HostState(False)) is None and busy_host_flag(None) is None
    run = RunInfo(1, "", None, "finished", "", {}, {"host_state": {"busy": True}}, [])
    assert [f.kind for f in run_flags(run)] == ["busy_host"]
    # what bench records (profiler.machine): others took 1.2 of the 2 cores while the run used 1
    machine = {"cpus": 2, "wall_s": 10.0, "own_cpu_s": 10.0, "others_cpu_s": 12.0}
    (flag,) = run_flags(RunInfo(2, "", None, "finished", "", {}, {}, [], machine=machine))
    assert flag.kind == "busy_host" and "other processes took 1.20 of 2 cores" in flag.message
    assert run_flags(RunInfo(3, "", None, "finished", "", {}, {}, [], machine=dict(machine, others_cpu_s=0.1))) == []


def test_noise_tests():
    a, b = SampleStats.from_samples([1.0, 1.01, 0.99]), SampleStats.from_samples([1.1, 1.11, 1.09])
    assert times_differ(a, b, 1.0, 1.1) and not times_differ(a, SampleStats.from_samples([1.005, 1.0, 0.995]), 1.0, 1.0)
    assert times_differ(None, None, 1.0, 1.1) and not times_differ(None, None, 1.0, 1.04)  # no samples: 5%
    assert not scores_differ([25.0, 31.0, 28.0, 28.04], [25.1, 31.0, 27.9, 28.12], 28.01, 28.03)
    assert scores_differ([23.9, 24.0, 24.1], [30.9, 31.0, 31.1], 24.0, 31.0)
    assert values_vary([4.0, 4.3]) and not values_vary([4.0, 4.1]) and values_vary([4.0, 4.1], 0.01)


def test_ties_within_noise_make_one_pick():
    """Six schedulers at 5 steps 0.05 dB apart and as fast as each other: one pick, five tied, not six picks."""
    stats = [SampleStats.from_samples([t * f for f in SPREAD]) for t in (0.255, 0.256, 0.257, 0.5)]
    scores = [[20.45 + d for d in (-1.0, 0.0, 1.0)], [20.46 + d for d in (-1.0, 0.0, 1.0)], [20.47 + d for d in (-1.0, 0.0, 1.0)],
              [30.0 + d for d in (-1.0, 0.0, 1.0)]]
    front = judged_front([0.255, 0.256, 0.257, 0.5], stats, [20.45, 20.46, 20.47, 30.0], scores, "higher")
    assert front.indices == [0, 3] and front.ties == {0: [1, 2]}


def test_summary_answers_first_then_failures_then_warnings():
    findings = summarize(build_run())
    kinds = [f.kind for f in findings]
    assert kinds == sorted(kinds, key=["answer", "failure", "warning"].index)
    texts = {(f.suite, f.text) for f in findings}
    assert ("batch", "batching stops paying at batch 8 (3.4 images/s, 97% of the best 3.5)") in texts
    assert ("resolutions", "time per image grows as pixels^1.00") in texts
    assert ("guidance", "fastest guidance=1 at 1.2 s per image; within noise of it: guidance=7.5") in texts
    # dpmpp_2m's adherence is 2% above euler's with no per-prompt samples to weigh: within noise, so no second pick
    assert ("schedulers", "Pareto picks, time against adherence: scheduler=euler (adherence 0.81, 1.2 s)") in texts
