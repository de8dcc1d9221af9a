"""The host's state while a run measures: load, CPU clocks, the CPU time other processes took, GPU state.

A time measured while another job shares the cores is a time of both jobs, and nothing in the
timings themselves says so. :class:`MachineTracker` reads, at the start and the end of a run (and
at every :meth:`~MachineTracker.mark`, which the runner calls as each round ends):

- ``/proc/stat``: CPU time every process on the host spent (user, nice, system, irq, softirq, and
  *steal*, the time a hypervisor gave our virtual CPUs to someone else); less this process
  tree's own CPU time (``os.times`` with waited-for children, plus live descendants through
  psutil), that is the CPU time **others** took during the run;
- ``/proc/loadavg`` and the CPU clock (``scaling_cur_freq``, else ``/proc/cpuinfo``);
- on NVIDIA GPUs (NVML, ``nvidia-ml-py``): SM and memory clocks, temperature, power draw, the
  reasons the driver is holding clocks down (thermal, power cap, ...) and the compute processes.

Every probe fails soft (a missing file or library leaves its field ``None``). What counts as busy
is decided over the recorded state in :mod:`diffprof.analysis.machine`, not here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: NVML's clock event (throttle) reason bits and their names.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


@dataclass(frozen=True)
class CpuReading:
    """One reading of the CPU counters, in seconds since boot (host) and since start (own)."""

    at_s: float
    busy_s: float
    steal_s: float
    own_s: float


def read_cpu_times(proc: Path) -> tuple[float, float] | None:
    """Host CPU seconds spent busy (steal included) and in steal, from ``proc/stat``'s first line."""
    try:
        line = (proc / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not line or line[0] != "cpu":
        return None
    fields = [int(v) for v in line[1:]] + [0] * 10
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


def read_cpu_count(proc: Path) -> int:
    """Logical CPUs ``proc/stat`` counts (the host's, whatever this process's affinity)."""
    try:
        count = sum(1 for line in (proc / "stat").read_text().splitlines() if line.startswith("cpu") and line[3:4].isdigit())
    except OSError:
        count = 0
    return count or os.cpu_count() or 1


def read_loadavg(proc: Path) -> list[float] | None:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [float(v) for v in (proc / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def read_cpu_mhz(proc: Path, sys: Path) -> dict[str, float] | None:
    """Current CPU clocks (mean, min, max over CPUs) in MHz: cpufreq when the kernel has it, else cpuinfo."""
    values: list[float] = []
    for path in sorted((sys / "devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            values.append(int(path.read_text()) / 1000)
        except (OSError, ValueError):
            pass
    if not values:
        try:
            values = [float(line.split(":", 1)[1]) for line in (proc / "cpuinfo").read_text().splitlines() if line.startswith("cpu MHz")]
        except (OSError, ValueError, IndexError):
            values = []
    if not values:
        return None
    return {"mean": round(sum(values) / len(values), 1), "min": min(values), "max": max(values)}


def own_cpu_seconds() -> float:
    """CPU seconds of this process tree: this process, its waited-for children, and live descendants."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:  # gone between listing and reading: its time lands in children_* once waited for
                pass
    except Exception:  # psutil missing or unsupported: waited-for children only
        pass
    return total


def gpu_states(nvml: Any = None) -> list[dict[str, Any]]:
    """Per-GPU clocks, temperature, power, clock-holding reasons and compute processes (NVML);
    an empty list without a driver or library. ``nvml`` is the ``pynvml`` module (tests pass a fake)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except Exception:
            return []
    try:
        nvml.nvmlInit()
    except Exception:
        return []
    states: list[dict[str, Any]] = []
    try:
        for index in range(_soft(nvml.nvmlDeviceGetCount) or 0):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
            mask = _soft(reasons_fn, handle) if reasons_fn else None
            power = _soft(nvml.nvmlDeviceGetPowerUsage, handle)
            processes = _soft(nvml.nvmlDeviceGetComputeRunningProcesses, handle)
            states.append({
                "index": index,
                "sm_clock_mhz": _soft(nvml.nvmlDeviceGetClockInfo, handle, getattr(nvml, "NVML_CLOCK_SM", 1)),
                "mem_clock_mhz": _soft(nvml.nvmlDeviceGetClockInfo, handle, getattr(nvml, "NVML_CLOCK_MEM", 2)),
                "temperature_c": _soft(nvml.nvmlDeviceGetTemperature, handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
                "power_w": power / 1000 if isinstance(power, (int, float)) else None,
                "throttle": throttle_names(mask) if isinstance(mask, int) else None,
                "processes": sorted(int(p.pid) for p in processes) if processes is not None else None,
            })
    finally:
        _soft(nvml.nvmlShutdown)
    return states


def throttle_names(mask: int) -> list[str]:
    """The names of NVML's clock-holding reasons set in ``mask`` (idle is not a slowdown: left out)."""
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit and name != "gpu_idle"]


def _soft(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


@dataclass
class Span:
    """One stretch of the run (a round, or the whole run): its wall time and who used the CPUs."""

    label: str
    wall_s: float
    own_cpu_s: float
    others_cpu_s: float
    steal_s: float


@dataclass
class MachineState:
    """What :class:`MachineTracker` recorded: the host before and after, and the CPU time taken.

    ``others_cpu_s`` is the host's busy CPU time (steal included) less this process tree's;
    ``spans`` split the run (one per round). ``sessions`` > 1 when a resumed run added to it.
    """

    cpus: int
    wall_s: float = 0.0
    own_cpu_s: float = 0.0
    others_cpu_s: float = 0.0
    steal_s: float = 0.0
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    sessions: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachineState:
        spans = [Span(**s) for s in data.get("spans", [])]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "spans"}
        return cls(**known, spans=spans)

    def merged(self, later: MachineState) -> MachineState:
        """This state and a later session's (a resumed run) as one: times add up, the first
        ``before`` and the last ``after`` stay."""
        return MachineState(
            cpus=max(self.cpus, later.cpus),
            wall_s=self.wall_s + later.wall_s,
            own_cpu_s=self.own_cpu_s + later.own_cpu_s,
            others_cpu_s=self.others_cpu_s + later.others_cpu_s,
            steal_s=self.steal_s + later.steal_s,
            before=self.before or later.before,
            after=later.after or self.after,
            spans=self.spans + later.spans,
            sessions=self.sessions + later.sessions,
        )


class MachineTracker:
    """Records :class:`MachineState` around a block: ``with tracker.track() as state: ...``.

    Args:
        proc, sys: where ``/proc`` and ``/sys`` are (tests pass a folder of fake files).
        own_cpu: this process tree's CPU seconds (default :func:`own_cpu_seconds`).
        clock: monotonic seconds (default ``time.monotonic``).
        gpus: the GPU probe (default :func:`gpu_states`; pass ``lambda: []`` to skip NVML).
    """

    def __init__(
        self,
        proc: str | Path = "/proc",
        sys: str | Path = "/sys",
        *,
        own_cpu: Callable[[], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
        gpus: Callable[[], list[dict[str, Any]]] = gpu_states,
    ) -> None:
        self.proc, self.sys = Path(proc), Path(sys)
        self._own, self._clock, self._gpus = own_cpu, clock, gpus
        self._state: MachineState | None = None
        self._start: CpuReading | None = None
        self._last: CpuReading | None = None

    def _reading(self) -> CpuReading:
        cpu = read_cpu_times(self.proc) or (0.0, 0.0)
        return CpuReading(self._clock(), cpu[0], cpu[1], self._own())

    def _host(self) -> dict[str, Any]:
        return {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loadavg": read_loadavg(self.proc),
            "cpu_mhz": read_cpu_mhz(self.proc, self.sys),
            "gpus": self._gpus(),
        }

    @staticmethod
    def _span(label: str, a: CpuReading, b: CpuReading) -> Span:
        own = max(0.0, b.own_s - a.own_s)
        return Span(label, max(0.0, b.at_s - a.at_s), own, max(0.0, (b.busy_s - a.busy_s) - own), max(0.0, b.steal_s - a.steal_s))

    def mark(self, label: str) -> None:
        """End a span here (the runner marks the end of each round); a no-op outside :meth:`track`."""
        if self._state is None or self._last is None:
            return
        now = self._reading()
        self._state.spans.append(self._span(label, self._last, now))
        self._last = now

    @contextmanager
    def track(self) -> Iterator[MachineState]:
        """Yield a :class:`MachineState` that is filled in when the block exits (raising or not)."""
        state = MachineState(cpus=read_cpu_count(self.proc), before=self._host())
        self._state, self._start = state, self._reading()
        self._last = self._start
        try:
            yield state
        finally:
            end = self._reading()
            total = self._span("run", self._start, end)
            state.wall_s, state.own_cpu_s, state.others_cpu_s, state.steal_s = total.wall_s, total.own_cpu_s, total.others_cpu_s, total.steal_s
            state.after = self._host()
            self._state = self._start = self._last = None
