"""Was the host busy while a run measured, and did two runs measure on hosts in the same state?

Pure functions over the machine state a run stores (:class:`~diffprof.profiler.machine.MachineState`
as a dict). **Busy** is decided on the CPU time *other* processes took (steal included), in cores:
a run is busy when others took more than :data:`BUSY_SHARE` of the capacity the run left free
(the host's CPUs less the cores the run itself kept busy), and at least :data:`BUSY_MIN_CORES`,
over the whole run or in any one round. On the 2-core machines of issue 17, a bench at one thread
leaves one core free: others taking half a core or more make it busy; one busy loop (a whole core)
always does. On a 16-core GPU host a run keeping 1.2 cores busy leaves 14.8 free: a compile with 8
threads beside it is busy, a stray single-threaded job is not. A run's measurements still count
when it was busy; a regression measured on a busy host is not believed (``compare`` calls it
``host busy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Others' share of the free CPU capacity above which the host counts as busy.
BUSY_SHARE = 0.5
#: ... and the fewest cores others must take for that (a host that leaves nothing free).
BUSY_MIN_CORES = 0.25
#: Relative change of a CPU or GPU clock between two runs worth a warning.
CLOCK_CHANGE = 0.05
#: Change of GPU temperature between two runs worth a warning, in degrees Celsius.
TEMPERATURE_CHANGE = 10.0
#: Clock-holding reasons that slow a GPU down (NVML); the others are settings, not events.
SLOWDOWNS = frozenset({"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})


@dataclass(frozen=True)
class HostLoad:
    """How loaded the host was during a run, and whether that makes it busy."""

    recorded: bool
    busy: bool = False
    others_cores: float = 0.0
    own_cores: float = 0.0
    cpus: int = 0
    limit_cores: float = 0.0
    busiest_span: str | None = None
    busiest_cores: float = 0.0

    @property
    def reason(self) -> str:
        """One line: what others took against what the run left free."""
        if not self.recorded:
            return "machine state not recorded"
        text = f"other processes took {self.others_cores:.2f} of {self.cpus} cores (the run itself {self.own_cores:.2f})"
        if self.busiest_span and self.busiest_cores > self.others_cores:
            text += f", {self.busiest_cores:.2f} in {self.busiest_span}"
        return text + f"; busy above {self.limit_cores:.2f}"


def _cores(cpu_s: float, wall_s: float) -> float:
    return cpu_s / wall_s if wall_s > 0 else 0.0


def busy_limit(cpus: int, own_cores: float) -> float:
    """Cores others may take before a run on ``cpus`` CPUs that kept ``own_cores`` busy is busy."""
    return max(BUSY_MIN_CORES, BUSY_SHARE * max(0.0, cpus - own_cores))


def host_load(machine: dict[str, Any] | None) -> HostLoad:
    """The :class:`HostLoad` of a stored machine state (``recorded=False`` for runs without one)."""
    if not machine or not machine.get("wall_s"):
        return HostLoad(recorded=False)
    cpus = int(machine.get("cpus") or 1)
    wall = float(machine["wall_s"])
    own = _cores(float(machine.get("own_cpu_s", 0.0)), wall)
    others = _cores(float(machine.get("others_cpu_s", 0.0)), wall)
    limit = busy_limit(cpus, own)
    busiest, busiest_cores = None, 0.0
    for span in machine.get("spans") or []:
        span_wall = float(span.get("wall_s", 0.0))
        if span_wall <= 0:
            continue
        cores = _cores(float(span.get("others_cpu_s", 0.0)), span_wall)
        if cores > busiest_cores:
            busiest, busiest_cores = str(span.get("label")), cores
    busy = others > limit or busiest_cores > limit
    return HostLoad(True, busy, others, own, cpus, limit, busiest, busiest_cores)


def gpu_slowdowns(machine: dict[str, Any] | None) -> list[str]:
    """``gpu0: sw_thermal_slowdown`` for every slowdown NVML reported before or after the run."""
    out: list[str] = []
    for when in ("before", "after"):
        for gpu in ((machine or {}).get(when) or {}).get("gpus") or []:
            for reason in gpu.get("throttle") or []:
                entry = f"gpu{gpu.get('index', 0)}: {reason}"
                if reason in SLOWDOWNS and entry not in out:
                    out.append(entry)
    return out


def machine_warnings(machine: dict[str, Any] | None) -> list[str]:
    """What a report should say about a run's host: busy, GPU clocks held down."""
    load = host_load(machine)
    warnings = []
    if load.busy:
        warnings.append(f"host busy during the run: {load.reason}; its timings include other work, and compare will not believe a regression measured on it")
    slow = gpu_slowdowns(machine)
    if slow:
        warnings.append("GPU clocks held down during the run (" + ", ".join(slow) + ")")
    return warnings


def machine_summary(machine: dict[str, Any] | None) -> str | None:
    """One line for a report's header: others' load, load averages, clocks (None when not recorded)."""
    load = host_load(machine)
    if not load.recorded or machine is None:
        return None
    parts = [f"others {load.others_cores:.2f} cores, run {load.own_cores:.2f} of {load.cpus}"]
    before, after = machine.get("before") or {}, machine.get("after") or {}
    if before.get("loadavg") and after.get("loadavg"):
        parts.append(f"load {before['loadavg'][0]:.2f} -> {after['loadavg'][0]:.2f}")
    if (before.get("cpu_mhz") or {}).get("mean") and (after.get("cpu_mhz") or {}).get("mean"):
        parts.append(f"CPU {before['cpu_mhz']['mean']:.0f} -> {after['cpu_mhz']['mean']:.0f} MHz")
    for gpu in after.get("gpus") or []:
        bits = [f"{gpu['sm_clock_mhz']} MHz" if gpu.get("sm_clock_mhz") else None,
                f"{gpu['temperature_c']} C" if gpu.get("temperature_c") is not None else None,
                f"{gpu['power_w']:.0f} W" if gpu.get("power_w") else None]
        shown = ", ".join(b for b in bits if b)
        if shown:
            parts.append(f"gpu{gpu.get('index', 0)} {shown}")
    return "; ".join(parts)


def _relative(a: Any, b: Any) -> float | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not a:
        return None
    return (b - a) / a


def machine_changes(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Differences between the states two runs measured in that could move their timings."""
    out: list[str] = []
    load_a, load_b = host_load(a), host_load(b)
    if load_a.recorded != load_b.recorded:
        out.append(f"machine state recorded for run {'A' if load_a.recorded else 'B'} only")
        return out
    if not load_a.recorded:
        return out
    if load_a.busy != load_b.busy:
        out.append(f"host busy in {'A' if load_a.busy else 'B'} only ({(load_a if load_a.busy else load_b).reason})")
    if load_a.cpus != load_b.cpus:
        out.append(f"CPUs {load_a.cpus} -> {load_b.cpus}")
    after_a, after_b = (a or {}).get("after") or {}, (b or {}).get("after") or {}
    change = _relative((after_a.get("cpu_mhz") or {}).get("mean"), (after_b.get("cpu_mhz") or {}).get("mean"))
    if change is not None and abs(change) > CLOCK_CHANGE:
        out.append(f"CPU clock {after_a['cpu_mhz']['mean']:.0f} -> {after_b['cpu_mhz']['mean']:.0f} MHz")
    gpus_b = {g.get("index"): g for g in after_b.get("gpus") or []}
    for ga in after_a.get("gpus") or []:
        gb = gpus_b.get(ga.get("index"))
        if gb is None:
            continue
        name = f"gpu{ga.get('index', 0)}"
        clock = _relative(ga.get("sm_clock_mhz"), gb.get("sm_clock_mhz"))
        if clock is not None and abs(clock) > CLOCK_CHANGE:
            out.append(f"{name} SM clock {ga['sm_clock_mhz']} -> {gb['sm_clock_mhz']} MHz")
        ta, tb = ga.get("temperature_c"), gb.get("temperature_c")
        if isinstance(ta, (int, float)) and isinstance(tb, (int, float)) and abs(tb - ta) >= TEMPERATURE_CHANGE:
            out.append(f"{name} temperature {ta} -> {tb} C")
        sa, sb = set(ga.get("throttle") or []) & SLOWDOWNS, set(gb.get("throttle") or []) & SLOWDOWNS
        if sa != sb:
            out.append(f"{name} slowdowns {', '.join(sorted(sa)) or 'none'} -> {', '.join(sorted(sb)) or 'none'}")
    return out
