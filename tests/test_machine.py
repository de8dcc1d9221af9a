"""Machine state: the tracker on fake /proc and /sys files and a fake NVML, the busy decision, the
differences between two runs' states, and where runs and reports carry them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from diffprof.analysis.machine import BUSY_MIN_CORES, busy_limit, gpu_slowdowns, host_load, machine_changes, machine_summary, machine_warnings
from diffprof.profiler.machine import MachineState, MachineTracker, gpu_states, read_cpu_mhz, throttle_names

TICK = 100  # SC_CLK_TCK on Linux


def write_proc(root: Path, busy_ticks: int, steal_ticks: int = 0, load: str = "0.50 0.40 0.30 1/100 1") -> None:
    """A fake /proc with two CPUs: ``busy_ticks`` of user time (steal apart) since boot."""
    (root / "stat").write_text(
        f"cpu  {busy_ticks} 0 0 100000 0 0 0 {steal_ticks} 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1\n"
    )
    (root / "loadavg").write_text(load + "\n")
    (root / "cpuinfo").write_text("processor : 0\ncpu MHz : 2400.0\nprocessor : 1\ncpu MHz : 2600.0\n")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_tracker_takes_this_process_trees_cpu_time_from_the_hosts(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("os.sysconf", lambda name: TICK if name == "SC_CLK_TCK" else 4096)
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    sys_.mkdir()
    write_proc(proc, 1000)
    clock, own = Clock(), {"s": 50.0}
    tracker = MachineTracker(proc, sys_, own_cpu=lambda: own["s"], clock=clock, gpus=lambda: [])
    with tracker.track() as state:
        # round 1: 10 s; the host spent 18 CPU-s and 0.5 s went to steal; 9.5 ours -> others 9.0 (0.9 cores)
        clock.now, own["s"] = 10.0, 59.5
        write_proc(proc, 1000 + 1800, steal_ticks=50)
        tracker.mark("round 1")
        # round 2: 10 s; the host spent 10 CPU-s, all ours
        clock.now, own["s"] = 20.0, 69.5
        write_proc(proc, 2800 + 1000, steal_ticks=50, load="1.90 1.00 0.50 2/100 1")
        tracker.mark("round 2")
    assert state.cpus == 2 and state.wall_s == 20.0 and state.own_cpu_s == pytest.approx(19.5)
    assert state.others_cpu_s == pytest.approx(28.5 - 19.5) and state.steal_s == pytest.approx(0.5)  # steal is others' time
    assert [(s.label, s.wall_s, round(s.others_cpu_s, 3)) for s in state.spans] == [("round 1", 10.0, 9.0), ("round 2", 10.0, 0.0)]
    assert state.before["loadavg"] == [0.5, 0.4, 0.3] and state.after["loadavg"] == [1.9, 1.0, 0.5]
    assert state.before["cpu_mhz"] == {"mean": 2500.0, "min": 2400.0, "max": 2600.0}
    load = host_load(state.to_dict())
    assert load.others_cores == pytest.approx(9.0 / 20) and load.busiest_span == "round 1" and load.busiest_cores == pytest.approx(0.9)
    assert load.busy  # the run average (0.45 cores) is under the limit (0.51), round 1 (0.9) is not
    assert MachineState.from_dict(state.to_dict()) == state


def test_the_tracker_fills_its_state_when_the_block_raises(tmp_path) -> None:
    proc = tmp_path
    write_proc(proc, 10)
    tracker = MachineTracker(proc, tmp_path, own_cpu=lambda: 0.0, clock=Clock(), gpus=lambda: [])
    with pytest.raises(KeyboardInterrupt), tracker.track() as state:
        raise KeyboardInterrupt
    assert state.after["loadavg"] == [0.5, 0.4, 0.3]
    tracker.mark("after")  # outside a block: nothing to mark
    assert state.spans == []


def test_missing_proc_files_fail_soft(tmp_path) -> None:
    with MachineTracker(tmp_path / "none", tmp_path / "none", gpus=lambda: []).track() as state:
        pass
    assert state.before["loadavg"] is None and state.before["cpu_mhz"] is None and state.cpus >= 1


def test_cpufreq_is_read_before_cpuinfo(tmp_path) -> None:
    for i, khz in enumerate((1800000, 3000000)):
        folder = tmp_path / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_cur_freq").write_text(f"{khz}\n")
    assert read_cpu_mhz(tmp_path, tmp_path / "sys") == {"mean": 2400.0, "min": 1800.0, "max": 3000.0}


def fake_nvml(mask: int = 0x4 | 0x1) -> SimpleNamespace:
    return SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetClockInfo=lambda h, kind: {1: 1980, 2: 3201}[kind], nvmlDeviceGetTemperature=lambda h, kind: 61,
        nvmlDeviceGetPowerUsage=lambda h: 412_500, nvmlDeviceGetCurrentClocksEventReasons=lambda h: mask,
        nvmlDeviceGetComputeRunningProcesses=lambda h: [SimpleNamespace(pid=4242)],
    )


def test_gpu_state_from_nvml() -> None:
    (gpu,) = gpu_states(fake_nvml())
    assert gpu == {"index": 0, "sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "temperature_c": 61, "power_w": 412.5,
                   "throttle": ["sw_power_cap"], "processes": [4242]}
    assert throttle_names(0x1 | 0x20 | 0x40) == ["sw_thermal_slowdown", "hw_thermal_slowdown"]  # idle is no slowdown
    broken = SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(RuntimeError("no driver")))
    assert gpu_states(broken) == []


def state(others: float, own: float = 10.0, wall: float = 10.0, cpus: int = 2, **extra: object) -> dict:
    return {"cpus": cpus, "wall_s": wall, "own_cpu_s": own, "others_cpu_s": others, "steal_s": 0.0, "before": {}, "after": {}, "spans": [], **extra}


@pytest.mark.parametrize(
    "others, own, cpus, busy",
    [
        (0.0, 10.0, 2, False),   # quiet 2-core host, a one-thread bench
        (4.0, 10.0, 2, False),   # others 0.4 cores of the 1 left free: under half
        (6.0, 10.0, 2, True),    # 0.6 cores: busy
        (10.0, 10.0, 2, True),   # a busy loop on the free core
        (2.0, 20.0, 2, False),   # the run kept both cores busy: others may take BUSY_MIN_CORES (0.25) ...
        (3.0, 20.0, 2, True),    # ... and no more
        (60.0, 12.0, 16, False), # a 16-core GPU host: one stray 6-core job is not busy
        (80.0, 12.0, 16, True),  # 8 cores are
    ],
)
def test_busy_is_others_taking_half_the_free_cores(others: float, own: float, cpus: int, busy: bool) -> None:
    load = host_load(state(others, own, cpus=cpus))
    assert load.recorded and load.busy is busy, load.reason
    assert load.limit_cores == pytest.approx(max(BUSY_MIN_CORES, 0.5 * (cpus - own / 10)))


def test_one_busy_round_makes_the_run_busy_and_unrecorded_runs_are_not() -> None:
    spans = [{"label": "round 1", "wall_s": 5.0, "others_cpu_s": 0.0}, {"label": "round 2", "wall_s": 5.0, "others_cpu_s": 4.0}]
    load = host_load(state(4.0, spans=spans))
    assert load.busy and load.busiest_span == "round 2" and "0.80 in round 2" in load.reason
    assert not host_load({}).recorded and not host_load({}).busy and host_load(None).reason == "machine state not recorded"
    assert busy_limit(2, 1.0) == 0.5


def test_warnings_and_differences_between_two_states() -> None:
    gpu = {"index": 0, "sm_clock_mhz": 1980, "temperature_c": 50, "throttle": []}
    hot = {"index": 0, "sm_clock_mhz": 1410, "temperature_c": 83, "throttle": ["sw_thermal_slowdown"]}
    a = state(0.0, after={"cpu_mhz": {"mean": 3000.0}, "gpus": [gpu], "loadavg": [0.1, 0, 0]}, before={"loadavg": [0.2, 0, 0], "cpu_mhz": {"mean": 3000.0}})
    b = state(12.0, after={"cpu_mhz": {"mean": 2400.0}, "gpus": [hot], "loadavg": [1.5, 0, 0]}, before={"loadavg": [0.2, 0, 0]})
    assert machine_warnings(a) == []
    warnings = machine_warnings(b)
    assert warnings[0].startswith("host busy during the run: other processes took 1.20 of 2 cores")
    assert warnings[1] == "GPU clocks held down during the run (gpu0: sw_thermal_slowdown)" and gpu_slowdowns(b) == ["gpu0: sw_thermal_slowdown"]
    changes = machine_changes(a, b)
    assert changes[0].startswith("host busy in B only") and "CPU clock 3000 -> 2400 MHz" in changes
    assert "gpu0 SM clock 1980 -> 1410 MHz" in changes and "gpu0 temperature 50 -> 83 C" in changes
    assert "gpu0 slowdowns none -> sw_thermal_slowdown" in changes
    assert machine_changes(a, a) == [] and machine_changes({}, {}) == []
    assert machine_changes(a, {}) == ["machine state recorded for run A only"]
    assert machine_summary(a) == "others 0.00 cores, run 1.00 of 2; load 0.20 -> 0.10; CPU 3000 -> 3000 MHz; gpu0 1980 MHz, 50 C"
    assert machine_summary({}) is None


def test_every_run_report_warns_when_the_host_was_busy() -> None:
    import json

    from diffprof.report import ReportOptions, get_renderer
    from diffprof.results import CellResult, RunInfo

    cell = CellResult("schedulers", {"scheduler": "ddim"}, {}, metrics={"s_per_image": 0.1}, samples={"call_s": [0.1, 0.1]})
    run = RunInfo(7, "2026-12-01T00:00:00+00:00", "2026-12-01T00:01:00+00:00", "finished", "diffprof bench", {}, {}, [cell],
                  machine=state(12.0, before={"loadavg": [2.0, 1, 1]}, after={"loadavg": [2.5, 1, 1]}))
    for name in ("console", "markdown", "html"):
        text = get_renderer(name).render(run, ReportOptions(plots=False))
        assert "host busy during the run: other processes took 1.20 of 2 cores" in text, name
        assert "others 1.20 cores, run 1.00 of 2; load 2.00 " in text, name
    compact = get_renderer("console").render(run, ReportOptions(compact=True, plots=False))
    assert "warning: host busy during the run" in compact
    assert json.loads(get_renderer("json").render(run))["machine"]["others_cpu_s"] == 12.0
    quiet = RunInfo(8, "2026-12-01T00:00:00+00:00", None, "finished", "x", {}, {}, [cell], machine=state(0.0))
    assert "host busy" not in get_renderer("markdown").render(quiet)
