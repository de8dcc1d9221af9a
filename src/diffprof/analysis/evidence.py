"""What a stored cell offers a comparison: its values of a metric, and the noise floor of its history.

:func:`cell_values` prefers per-round values (``CellResult.rounds``: one per round, each an
independent draw of what a run measures); a cell stored without rounds (one round, or an older
diffprof) offers its per-call samples instead, scaled to the metric (``call_s`` behind
``s_per_image`` divided by the batch; inverted for a rate such as ``images_per_s``), which is the
weaker evidence the note of a comparison then names. :func:`history_floor` gathers earlier runs of
the same cell (same requested key, same rounds, same environment apart from the source revision,
host not busy) into a :class:`~diffprof.analysis.verdicts.NoiseFloor`.

Speed adjustment (:mod:`diffprof.profiler.probe`): each round of a cell stores the time of a fixed
piece of work beside it. Between runs in the same environment, a cell's times divided by its probes
cancel the drift of the machine between processes (a noisy neighbour, a slower core: both slow
down) and keep a change of the code (the probe's work did not change). :func:`speed_reference` is what the adjusted values are scaled back to.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from diffprof.analysis.machine import host_load
from diffprof.analysis.verdicts import NoiseFloor, noise_floor
from diffprof.environment import environment_changes
from diffprof.metrics import metric as describe
from diffprof.results import CellResult, RunInfo

Evidence = Literal["rounds", "calls", "value"]

#: Environment keys that may differ between runs of "the same environment": the source revision
#: (a history of baselines spans commits) and what differs between any two captures.
HISTORY_IGNORES = ("git.",)


#: The per-round series of the speed probe (:mod:`diffprof.profiler.probe`).
PROBE = "probe_s"


def speed_adjustable(metric: str) -> bool:
    """Whether ``metric`` scales with the machine's speed: a time (slower machine, longer) or a rate
    of time (``1/s``: slower machine, fewer); memory, FLOPs and quality do not."""
    return metric != PROBE and describe(metric).unit in ("s", "1/s")


def probes(cell: CellResult, metric: str) -> list[float] | None:
    """``cell``'s speed probe per round, when it has one for every round of ``metric``."""
    values, series = cell.rounds.get(PROBE), cell.rounds.get(metric)
    if not values or not series or len(values) != len(series) or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return [float(v) for v in values]


def speed_reference(cells: Iterable[CellResult]) -> float | None:
    """The geometric mean of every probe of ``cells``: the speed adjusted values are scaled to."""
    logs = [math.log(v) for c in cells for v in (c.rounds.get(PROBE) or []) if math.isfinite(v) and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


def cell_values(cell: CellResult, metric: str, sample: str | None, speed: float | None = None) -> tuple[list[float], Evidence]:
    """The values of ``metric`` a comparison weighs for ``cell``, and what they are.

    With ``speed`` (a :func:`speed_reference`) the values of a time are scaled by that over the
    geometric mean of the cell's probes (rates by its inverse): the cell as if its process had run at
    the reference speed. The cell's probes together, not each round's own: drift between processes
    (the one rounds cannot average) is what the adjustment removes, and one probe per round would
    add that probe's own noise to every round. Cells without probes are weighed as measured.
    """
    rounds = cell.rounds.get(metric)
    if rounds and len(rounds) > 1:
        probe = probes(cell, metric) if speed is not None and speed_adjustable(metric) else None
        if probe is not None and speed is not None:
            factor = speed / math.exp(sum(map(math.log, probe)) / len(probe))
            if describe(metric).unit == "1/s":
                factor = 1 / factor
            return [float(v) * factor for v in rounds], "rounds"
        return [float(v) for v in rounds], "rounds"
    value = cell.metrics.get(metric)
    raw = [float(v) for v in cell.samples.get(sample, [])] if sample else []
    raw = [v for v in raw if math.isfinite(v) and v > 0]
    if raw and value is not None and math.isfinite(value) and value > 0:
        centre = float(np.median(raw))
        inverse = describe(metric).direction != describe(sample or "").direction
        if inverse:
            return [value * centre / v for v in raw], "calls"
        return [value * v / centre for v in raw], "calls"
    if value is not None and math.isfinite(value):
        return [float(value)], "value"
    return [], "value"


def same_environment(a: dict, b: dict) -> bool:
    """Whether two captured environments match, apart from :data:`HISTORY_IGNORES`."""
    return not any(not key.startswith(HISTORY_IGNORES) for key in environment_changes(a, b))


def same_run(x: RunInfo, y: RunInfo) -> bool:
    """One run, wherever it was loaded from: by uid where both have one (ids differ between the
    stores a run is copied to, and one store's id may be another run elsewhere), else by id."""
    return x.uid == y.uid if x.uid and y.uid else x.id == y.id


def history_cells(
    cell: CellResult, run: RunInfo, history: Iterable[RunInfo], exclude: Sequence[RunInfo]
) -> list[CellResult]:
    """Earlier measurements of ``cell`` (of ``run``): ok cells with its requested key and round
    count in runs other than ``run`` and ``exclude``, with ``run``'s environment, on hosts that
    were not busy."""
    out = []
    for other in history:
        if any(same_run(other, r) for r in (run, *exclude)):
            continue
        if host_load(other.machine).busy or not same_environment(run.environment, other.environment):
            continue
        for candidate in other.cells:
            if candidate.ok and candidate.key == cell.key and candidate.round_count == cell.round_count:
                out.append(candidate)
                break
    return out


def history_floor(
    cell: CellResult, run: RunInfo, history: Iterable[RunInfo], metric: str, sample: str | None, exclude: Sequence[RunInfo],
    speed: float | None = None,
) -> NoiseFloor | None:
    """The noise floor of ``cell`` from its earlier runs and itself (None with under 3 runs); with
    ``speed``, of their speed-adjusted values (:func:`cell_values`)."""
    earlier = history_cells(cell, run, history, exclude)
    if not earlier:
        return None
    series = [cell_values(c, metric, sample, speed)[0] for c in [*earlier, cell]]
    return noise_floor([s for s in series if s])


def match_cells(
    cells_a: list[CellResult], cells_b: list[CellResult]
) -> tuple[list[tuple[CellResult, CellResult]], list[CellResult], list[CellResult]]:
    """Pair cells with equal (suite, labels); return the pairs and the unmatched of each side.

    Should one run hold several cells with the same suite and labels (settings differing outside
    the labels), they pair up in stored order.
    """
    by_key: dict[str, list[CellResult]] = defaultdict(list)
    for cell in cells_b:
        by_key[_match_key(cell)].append(cell)
    pairs: list[tuple[CellResult, CellResult]] = []
    only_a: list[CellResult] = []
    for cell in cells_a:
        candidates = by_key.get(_match_key(cell))
        if candidates:
            pairs.append((cell, candidates.pop(0)))
        else:
            only_a.append(cell)
    matched_b = {id(b) for _, b in pairs}
    only_b = [c for c in cells_b if id(c) not in matched_b]
    return pairs, only_a, only_b


def _match_key(cell: CellResult) -> str:
    return json.dumps([cell.suite, cell.labels], sort_keys=True, default=str)


def speed_for(run_a: RunInfo, run_b: RunInfo, pairs: Sequence[tuple[CellResult, CellResult]], metric: str) -> tuple[float | None, str]:
    """The speed reference times are adjusted to, and the note that says so (None, "" when not).

    Only between runs of one environment (apart from the source revision): a new torch, driver or
    device may change the probe's own speed, which is a change to report, not to divide out. Only
    when every compared cell carries probes, so all cells are judged alike."""
    if not speed_adjustable(metric) or not pairs:
        return None, ""
    if not all(probes(a, metric) and probes(b, metric) for a, b in pairs if a.ok and b.ok):
        return None, ""
    if not same_environment(run_a.environment, run_b.environment):
        return None, "times compared as measured, not speed-adjusted: the runs' environments differ (see the environment changes)"
    cells = [c for pair in pairs for c in pair if c.ok]
    probe_spread, value_spread = _median_spread(cells, PROBE), _median_spread(cells, metric)
    if probe_spread is not None and value_spread is not None and probe_spread > value_spread:
        # dividing by a probe noisier than the cells adds its noise (H200, SD 1.5 -O fast: cells 0.1-0.3%,
        # a 0.26 ms probe 1-3%; a real 2% slowdown read as +0.6%)
        return None, (f"times compared as measured, not speed-adjusted: the speed probe scatters by {100 * probe_spread:.1f}% "
                      f"from round to round, the cells by {100 * value_spread:.1f}%")
    ref_a, ref_b = speed_reference(a for a, _ in pairs), speed_reference(b for _, b in pairs)
    reference = speed_reference(c for pair in pairs for c in pair)
    if reference is None or ref_a is None or ref_b is None:
        return None, ""
    ratio = ref_b / ref_a
    return reference, (f"times adjusted for the machine's speed: the speed probe ran {_pct_change(ratio)} in B than in A "
                       "(a fixed piece of work timed beside every round; --no-speed-adjust compares them as measured)")


def _median_spread(cells: Sequence[CellResult], name: str) -> float | None:
    """The median over ``cells`` of the round-to-round standard deviation of log ``name``."""
    spreads = []
    for cell in cells:
        logs = [math.log(v) for v in cell.rounds.get(name) or [] if math.isfinite(v) and v > 0]
        if len(logs) > 1:
            spreads.append(float(np.std(logs, ddof=1)))
    return float(np.median(spreads)) if spreads else None


def _pct_change(ratio: float) -> str:
    if abs(ratio - 1) < 0.005:
        return "as fast"
    return f"{100 * abs(ratio - 1):.0f}% {'slower' if ratio > 1 else 'faster'}"
