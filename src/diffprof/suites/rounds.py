"""Rounds: a cell's repeats spread over rounds interleaved across the cells of a run, and merged back.

Repeats measured in one go share one minute of the machine's life: a busy minute, a clock change
or a slow drift moves all of them together, so their spread says nothing about the noise between
runs, and a test on them calls that drift significant (issue 17: 20 of 45 identical pairs judged
regressions). So the runner hands the executor round 1 of every cell, then round 2 of every cell,
and so on (round-major, as asv interleaves its rounds across benchmarks; with ``--isolate`` each
round is a fresh process, as pyperf spreads values over worker processes). Each round measures its
share of the repeats (warming up first where its engine is cold); a busy minute then lands in one
round of many cells, where the spread of a cell's rounds shows it.

:func:`merge_rounds` turns the rounds' results into the one stored cell: per-call samples in round
order, per-round values of the metrics measured in every round (``CellResult.rounds``, what
``compare`` tests), and each metric combined across rounds by its registry rule (median of times,
largest memory peak, the first round's load time and quality). Merging is associative, so a run
resumed after an interruption continues a cell's rounds where the stored ones end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from diffprof.metrics import metric
from diffprof.results import CellResult
from diffprof.stats import SampleStats
from diffprof.suites.base import Cell, Round


def round_calls(repeats: int, rounds: int) -> list[int]:
    """``repeats`` spread over ``min(rounds, repeats)`` rounds, larger shares first: 5 over 3 gives
    ``[2, 2, 1]``; 3 over 3 gives one call per round."""
    n = max(1, min(rounds, repeats))
    base, extra = divmod(repeats, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def planned_rounds(cell: Cell) -> int:
    """How many rounds ``cell`` is measured in under its config."""
    return len(round_calls(cell.config.repeats, cell.config.rounds))


def round_of(cell: Cell, index: int) -> Cell:
    """Round ``index`` (from 1) of ``cell``; a cell measured in one round is handed out as itself."""
    calls = round_calls(cell.config.repeats, cell.config.rounds)
    if len(calls) == 1:
        return replace(cell, round=None)
    return replace(cell, round=Round(index, len(calls), calls[index - 1]))


def as_rounds(result: CellResult) -> CellResult:
    """A one-round result in the form :func:`merge_rounds` concatenates: its per-round series are
    the one value of every metric measured each round (those combined by median)."""
    if result.rounds or not result.ok:
        return result
    series = {name: [value] for name, value in result.metrics.items() if metric(name).combine == "median"}
    return replace(result, rounds=series)


def merge_rounds(parts: Sequence[CellResult], planned: int) -> CellResult:
    """One cell from its rounds (each a round's result, or an earlier merge of several), in order.

    A failed round fails the cell; what the rounds before it measured is kept, and the error
    names the round. ``settings["rounds"]`` says how many rounds the merged values hold.
    """
    if not parts:
        raise ValueError("merge_rounds needs at least one round")
    if planned <= 1 and len(parts) == 1:
        return parts[0]
    measured = [as_rounds(p) for p in parts if p.ok]
    failed = next((p for p in parts if not p.ok), None)
    rounds: dict[str, list[float]] = {}
    for name in dict.fromkeys(n for p in measured for n in p.rounds):
        if all(name in p.rounds for p in measured):
            rounds[name] = [v for p in measured for v in p.rounds[name]]
    samples: dict[str, list[float]] = {}
    for part in measured:
        for name, values in part.samples.items():
            samples.setdefault(name, []).extend(values)
    metrics: dict[str, float] = {}
    for name in dict.fromkeys(n for p in measured for n in p.metrics):
        values = [p.metrics[name] for p in measured if name in p.metrics]
        rule = metric(name).combine
        if rule == "first":
            metrics[name] = values[0]
        elif rule == "max":
            metrics[name] = max(values)
        else:
            metrics[name] = SampleStats.from_samples(rounds.get(name, values)).median
    done = sum(p.round_count for p in measured)
    first = measured[0] if measured else parts[0]
    settings = dict(first.settings, rounds=done)
    error = None
    if failed is not None:
        error = f"round {done + 1} of {planned}: {failed.error or 'failed'}"
    return CellResult(
        suite=first.suite,
        labels=first.labels,
        settings=settings,
        status="failed" if failed is not None else "ok",
        error=error,
        metrics=metrics,
        samples=samples,
        artifacts=dict(first.artifacts),
        rounds=rounds if done > 1 or planned > 1 else {},
        started_at=parts[0].started_at,
        finished_at=parts[-1].finished_at,
        cell_key=first.cell_key,
    )


class RoundPlan:
    """The rounds of a run's cells: which to hand out first, which comes next, what is merged so far.

    ``stored`` holds cells an interrupted run already measured some rounds of (by key): those
    continue at their next round; cells already measured in every round are not handed out.
    """

    def __init__(self, cells: Sequence[Cell], stored: dict[str, CellResult] | None = None) -> None:
        stored = stored or {}
        self._parts: dict[str, list[CellResult]] = {}
        self._first: list[Cell] = []
        self.complete: list[Cell] = []
        for cell in cells:
            earlier = stored.get(cell.key)
            done = earlier.round_count if earlier is not None and earlier.ok else 0
            if earlier is not None and earlier.ok and done >= planned_rounds(cell):
                self.complete.append(cell)
                continue
            self._parts[cell.key] = [earlier] if done else []
            self._first.append(round_of(cell, done + 1))

    def first(self) -> list[Cell]:
        """The first round still to measure of every unfinished cell, in sweep order."""
        return list(self._first)

    @property
    def measurements(self) -> int:
        """Round measurements still to make (what a progress bar counts)."""
        return sum(planned_rounds(c) - (c.round.index - 1 if c.round else 0) for c in self._first)

    def add(self, done: Cell, result: CellResult) -> tuple[CellResult, Cell | None]:
        """Take one round's result: the cell merged so far and its next round (None: finished)."""
        parts = self._parts.setdefault(done.key, [])
        parts.append(result)
        planned = planned_rounds(done)
        merged = merge_rounds(parts, planned)
        index = done.round.index if done.round is not None else planned
        if not result.ok or index >= planned:
            return merged, None
        return merged, round_of(done, index + 1)
