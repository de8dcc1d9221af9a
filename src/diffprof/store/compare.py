"""``compare_runs``: load two stored runs, and the earlier runs of their cells, and compare them.

The comparison itself (matching, noise floors, tests, corrections, verdicts) is a pure function of
the runs in :mod:`diffprof.analysis.compare`; this module resolves the references and gathers the
history (:meth:`Store.history`: earlier runs holding the same requested cells). The names below stay
importable from here, where they used to live.
"""

from __future__ import annotations

from diffprof.analysis.compare import CellComparison, Comparison, Verdict, compare, match_cells
from diffprof.analysis.significance import min_mannwhitney_p, significance
from diffprof.analysis.verdicts import Correction
from diffprof.metrics import Direction, direction_of
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
) -> Comparison:
    """Compare run ``ref_b`` against the baseline ``ref_a`` (run references: an id, ``latest``,
    ``latest~N`` or a name); the other arguments are :func:`~diffprof.analysis.compare.compare`'s.
    ``history=False`` leaves the store's earlier runs out (no noise floor); ``adjust_speed=False``
    compares times as measured (not divided by their rounds' speed probes).

    Raises:
        StoreError: a reference names no run.
        ConfigError: see :func:`~diffprof.analysis.compare.compare`.
    """
    run_a, run_b = store.get_run(ref_a), store.get_run(ref_b)
    earlier = store.history([c.key for c in run_a.cells if c.ok], before=max(run_a.id, run_b.id)) if history else []
    return compare(
        run_a, run_b, threshold=threshold, metric=metric, sample=sample, alpha=alpha, direction=direction,
        correction=correction, history=earlier, adjust_speed=adjust_speed,
    )
