"""Results that cannot be right, flagged on the result itself so no reader takes them at face value.

More denoising steps or more pixels never make an image cheaper, and a larger batch never makes
each image dearer by more than noise on an idle machine: when a run says otherwise, something
else was competing for the machine. :func:`monotonic_flags` finds such pairs of cells (beyond
noise, :func:`diffprof.analysis.noise.times_differ`), :func:`busy_host_flag` turns a recorded
machine state into a warning, and :func:`run_flags` collects both for a whole run. Pure functions:
reports derive them at render time, so stores written before this module get them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from diffprof.analysis.cells import batch_size, pixels, seconds_per_image, time_stats
from diffprof.analysis.noise import times_differ
from diffprof.results import CellResult, RunInfo

FlagKind = Literal["non_monotonic", "busy_host"]
#: At most this many implausible pairs are named per suite (the rest are counted).
MAX_PAIRS = 3


@dataclass(frozen=True)
class HostState:
    """Whether the machine was busy while a run measured, and why (``load 3.2 on 2 cores``)."""

    busy: bool
    reason: str = ""


@dataclass(frozen=True)
class Flag:
    """One warning about a result: what looks wrong and, where known, why."""

    kind: FlagKind
    message: str
    suite: str | None = None
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Axis:
    name: str
    value: Callable[[CellResult], float | None]
    #: the cost that must not fall as the axis grows: ``more`` (time per image grows with steps
    #: and pixels) or ``not_more`` (time per image does not grow with the batch)
    expect: Literal["more", "not_more"]
    keys: tuple[str, ...]
    describe: Callable[[float], str]


def _steps(cell: CellResult) -> float | None:
    v = cell.labels.get("steps")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _side(cell: CellResult) -> str:
    return f"{cell.labels.get('width', cell.settings.get('width'))}×{cell.labels.get('height', cell.settings.get('height'))}"


AXES: tuple[_Axis, ...] = (
    _Axis("steps", _steps, "more", ("steps",), lambda v: f"{v:g} steps"),
    _Axis("pixels", lambda c: pixels(c) if ("width" in c.labels or "height" in c.labels) else None, "more", ("width", "height"), str),
    _Axis("batch", lambda c: batch_size(c) if "batch" in c.labels else None, "not_more", ("batch",), lambda v: f"batch {v:g}"),
)


def _context(cell: CellResult, axis: _Axis) -> str:
    """The other labels of the cell (``scheduler=pndm: ``), so a pair in a grid is found again."""
    rest = [f"{k}={v}" for k, v in cell.labels.items() if k not in axis.keys]
    return ", ".join(rest) + ": " if rest else ""


def _groups(cells: Sequence[CellResult], axis: _Axis) -> list[list[tuple[float, float, CellResult]]]:
    """Cells with the axis swept, grouped by every other label (a scheduler x steps sweep checks
    steps within each scheduler)."""
    groups: dict[str, list[tuple[float, float, CellResult]]] = {}
    for cell in cells:
        x, t = axis.value(cell), seconds_per_image(cell)
        if not cell.ok or x is None or t is None or not t > 0:
            continue
        rest = repr(sorted((k, repr(v)) for k, v in cell.labels.items() if k not in axis.keys))
        groups.setdefault(rest, []).append((x, t, cell))
    return [sorted(g, key=lambda p: p[0]) for g in groups.values() if len({x for x, _, _ in g}) > 1]


def _name(axis: _Axis, x: float, cell: CellResult) -> str:
    return _side(cell) if axis.name == "pixels" else axis.describe(x)


def monotonic_flags(suite: str, cells: Sequence[CellResult]) -> list[Flag]:
    """Pairs of cells where more steps or pixels cost less time per image, or a larger batch cost
    more per image (less throughput), beyond noise: one flag per suite and axis."""
    flags = []
    for axis in AXES:
        found: list[str] = []
        involved: list[str] = []
        for group in _groups(cells, axis):
            for i, (xa, ta, a) in enumerate(group):
                for xb, tb, b in group[i + 1 :]:
                    if xb <= xa:
                        continue
                    wrong = tb < ta if axis.expect == "more" else tb > ta
                    if not wrong or not times_differ(time_stats(a), time_stats(b), ta, tb):
                        continue
                    involved += [a.label, b.label]
                    where = _context(b, axis)
                    if axis.expect == "more":
                        found.append(f"{where}{_name(axis, xb, b)} took {_s(tb)} per image, less than {_name(axis, xa, a)} ({_s(ta)})")
                    else:
                        found.append(f"{where}{_name(axis, xb, b)} gave {1 / tb:.3g} images/s, less than {_name(axis, xa, a)} ({1 / ta:.3g})")
        if found:
            more = f" (and {len(found) - MAX_PAIRS} more)" if len(found) > MAX_PAIRS else ""
            why = "more work cannot take less time" if axis.expect == "more" else "a larger batch should not lower throughput"
            flags.append(Flag("non_monotonic", f"{'; '.join(found[:MAX_PAIRS])}{more}: {why}, so something else was using the machine "
                              "(rerun on an idle host, or with more repeats)", suite, tuple(dict.fromkeys(involved))))
    return flags


def _s(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def busy_host_flag(state: HostState | None) -> Flag | None:
    """A warning when the machine was busy while the run measured."""
    if state is None or not state.busy:
        return None
    reason = f" ({state.reason})" if state.reason else ""
    return Flag("busy_host", f"the host was busy while this run measured{reason}: timings include other work", None)


def host_state(environment: Mapping[str, Any]) -> HostState | None:
    """The machine state a run recorded in its environment, as busy or not; ``None`` when the
    run recorded none (stores written before machine state was captured)."""
    state = environment.get("host_state")
    if isinstance(state, Mapping) and isinstance(state.get("busy"), bool):
        return HostState(state["busy"], str(state.get("reason") or ""))
    return None


def run_state(run: RunInfo) -> HostState | None:
    """Whether ``run``'s host was busy: from the machine state the run recorded
    (:func:`diffprof.analysis.machine.host_load`), else from a ``host_state`` in its environment."""
    from diffprof.analysis.machine import host_load

    load = host_load(run.machine)
    if load.recorded:
        return HostState(load.busy, load.reason if load.busy else "")
    return host_state(run.environment)


def run_flags(run: RunInfo) -> list[Flag]:
    """Every flag of a run: a busy host first, then per suite its implausible pairs."""
    flags = [f for f in (busy_host_flag(run_state(run)),) if f is not None]
    for suite in run.suites():
        flags += monotonic_flags(suite, [c for c in run.cells if c.suite == suite])
    return flags
