"""``compare_runs``: load two stored runs, and the earlier runs of their cells, and compare them.

The comparison itself (matching, noise floors, tests, corrections, verdicts) is a pure function of
the runs in :mod:`diffprof.analysis.compare`; this module resolves the references and gathers the
history (:meth:`Store.history`: earlier runs holding the same requested cells). The names below stay
importable from here, where they used to live.

The baseline may live in another store than the candidate (``compare A B --baseline-db URL``: A in
the team's shared store, B in this runner's file). Then the noise floor comes from the baseline's
store: that is where the history of those cells accumulates (every runner pushes there), while the
candidate's store is often a fresh file holding B alone. Which earlier runs count is what a compare
of the two inside that store would use: runs before the later of A and B, where B counts as the
newest run unless it was pushed there too (found by its uid, so a pushed copy of B is never its own
history); a compare across stores therefore gives the verdicts of the same compare within one.
"""

from __future__ import annotations

from diffprof.analysis.compare import CellComparison, Comparison, Verdict, compare, match_cells
from diffprof.analysis.significance import min_mannwhitney_p, significance
from diffprof.analysis.verdicts import Correction
from diffprof.metrics import Direction, direction_of
from diffprof.results import RunInfo
from diffprof.store.refs import RunRefLike
from diffprof.store.store import Store

__all__ = [
    "CellComparison",
    "Comparison",
    "Direction",
    "Verdict",
    "compare_runs",
    "direction_of",
    "match_cells",
    "min_mannwhitney_p",
    "significance",
]


def compare_runs(
    store: Store,
    ref_a: RunRefLike,
    ref_b: RunRefLike,
    threshold: float = 0.05,
    metric: str = "s_per_image",
    sample: str | None = None,
    alpha: float = 0.05,
    direction: Direction | None = None,
    *,
    correction: Correction = "bh",
    history: bool = True,
    adjust_speed: bool = True,
    baseline: Store | None = None,
) -> Comparison:
    """Compare run ``ref_b`` against the baseline ``ref_a`` (run references: an id, ``latest``,
    ``latest~N`` or a name); the other arguments are :func:`~diffprof.analysis.compare.compare`'s.
    ``history=False`` leaves the store's earlier runs out (no noise floor); ``adjust_speed=False``
    compares times as measured (not divided by their rounds' speed probes). ``baseline``: the store
    ``ref_a`` is looked up in, and whose earlier runs give the noise floor (default: ``store``).

    Raises:
        StoreError: a reference names no run.
        ConfigError: see :func:`~diffprof.analysis.compare.compare`.
    """
    home = baseline if baseline is not None else store
    run_a, run_b = home.get_run(ref_a), store.get_run(ref_b)
    earlier = home.history([c.key for c in run_a.cells if c.ok], before=_history_bound(home, store, run_a, run_b)) if history else []
    return compare(
        run_a, run_b, threshold=threshold, metric=metric, sample=sample, alpha=alpha, direction=direction,
        correction=correction, history=earlier, adjust_speed=adjust_speed,
    )


def _history_bound(home: Store, store: Store, run_a: RunInfo, run_b: RunInfo) -> int | None:
    """The id in ``home`` (the baseline's store) below which earlier runs count: the later of A and
    B, with B as the newest run (None: no bound) when it is in another store and was not copied in."""
    if home is store:
        return max(run_a.id, run_b.id)
    b_there = home.find_uid(run_b.uid) if run_b.uid else None
    return None if b_there is None else max(run_a.id, b_there)
