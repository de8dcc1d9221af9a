"""What a stored cell offers a comparison: its values of a metric, and the noise floor of its history.

:func:`cell_values` prefers per-round values (``CellResult.rounds``: one per round, each an
independent draw of what a run measures); a cell stored without rounds (one round, or an older
diffprof) offers its per-call samples instead, scaled to the metric (``call_s`` behind
``s_per_image`` divided by the batch; inverted for a rate such as ``images_per_s``), which is the
weaker evidence the note of a comparison then names. :func:`history_floor` gathers earlier runs of
the same cell (same requested key, same rounds, same environment apart from the source revision,
host not busy) into a :class:`~diffprof.analysis.verdicts.NoiseFloor`.
"""

from __future__ import annotations

import math
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


def cell_values(cell: CellResult, metric: str, sample: str | None) -> tuple[list[float], Evidence]:
    """The values of ``metric`` a comparison weighs for ``cell``, and what they are."""
    rounds = cell.rounds.get(metric)
    if rounds and len(rounds) > 1:
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


def history_cells(
    cell: CellResult, run: RunInfo, history: Iterable[RunInfo], exclude: Sequence[int]
) -> list[CellResult]:
    """Earlier measurements of ``cell`` (of ``run``): ok cells with its requested key and round
    count in runs other than ``exclude``, with ``run``'s environment, on hosts that were not busy."""
    out = []
    for other in history:
        if other.id in exclude or other.id == run.id:
            continue
        if host_load(other.machine).busy or not same_environment(run.environment, other.environment):
            continue
        for candidate in other.cells:
            if candidate.ok and candidate.key == cell.key and candidate.round_count == cell.round_count:
                out.append(candidate)
                break
    return out


def history_floor(
    cell: CellResult, run: RunInfo, history: Iterable[RunInfo], metric: str, sample: str | None, exclude: Sequence[int]
) -> NoiseFloor | None:
    """The noise floor of ``cell`` from its earlier runs and itself (None with under 3 runs)."""
    earlier = history_cells(cell, run, history, exclude)
    if not earlier:
        return None
    series = [cell_values(c, metric, sample)[0] for c in [*earlier, cell]]
    return noise_floor([s for s in series if s])
