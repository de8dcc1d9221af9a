"""Is the setting tune found really faster? The same test ``compare`` uses, on rounds measured together.

The search ranks candidates by one measured time each, good enough to prune (it allows
:data:`~diffprof.tune.search.NOISE` for that), not to choose: on a shared machine single runs of one
setting vary 2.5x, and issue 17 saw tune choose ``channels_last`` on a 7% difference. So before
choosing, the fastest feasible settings, the fastest simpler ones they would replace, the baseline
and diffprof's own default are timed in the same rounds, interleaved (round 1 of each, then round 2
...; the order rotates). The leader is the fastest of them on those rounds (geometric mean), and each
step of the choice is judged with :func:`~diffprof.analysis.verdicts.estimate_change` and
:func:`~diffprof.analysis.verdicts.judge` at ``min_gain``:

1. a setting that adds a switch or changes precision is kept over the fastest timed setting simpler
   than it only when it is an *improvement* beyond the threshold; otherwise the simpler one is kept,
   and the same question is asked of it and the next simpler one;
2. what is left is accepted only when it is an improvement over the baseline; otherwise the baseline
   stays (when it meets the constraints), and the summary says no setting beat it beyond the noise.

A ``too noisy`` verdict asks for more rounds (:func:`~diffprof.analysis.verdicts.rounds_needed`);
the caller measures them once, up to its maximum, and decides again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from diffprof.analysis.verdicts import Change, Judgement, estimate_change, judge, run_value
from diffprof.tune.space import Setting


@dataclass(frozen=True)
class Duel:
    """``contender`` against ``reference`` on their per-round times (B = contender, A = reference)."""

    reference: Setting
    contender: Setting
    change: Change
    judgement: Judgement

    @property
    def faster(self) -> bool:
        """The contender is faster beyond the threshold and the noise."""
        return self.judgement.verdict == "improvement"

    @property
    def speedup(self) -> float:
        """The reference's time over the contender's (geometric means of the rounds)."""
        return 1 / self.change.ratio if math.isfinite(self.change.log_ratio) else math.nan

    def describe(self) -> str:
        text = f"{self.speedup:.2f}x against {self.reference.label}: {self.judgement.verdict}"
        return text + (f" ({self.judgement.note})" if self.judgement.note else "")


@dataclass
class Decision:
    """What the timing rounds decided (see the module docstring).

    Attributes:
        leader: the fastest feasible setting timed, on the rounds.
        chosen: the setting chosen; the baseline when nothing beat it beyond the noise.
        accepted: ``chosen`` beat the baseline beyond the noise (or the baseline misses the constraints).
        chain: the duels of step 1, in order (a kept leader's last duel says why it was kept).
        baseline: ``chosen`` against the baseline.
        default: ``chosen`` against diffprof's own default setting (None when not timed).
        values: per-round seconds per image of every setting timed.
        min_gain: the threshold (0.05: 5%).
    """

    leader: Setting
    chosen: Setting
    accepted: bool
    chain: list[Duel]
    baseline: Duel | None
    default: Duel | None
    values: dict[Setting, list[float]]
    min_gain: float
    notes: list[str] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.values.values()), default=0)

    def seconds(self, setting: Setting) -> float | None:
        """The geometric mean of ``setting``'s rounds."""
        return run_value(self.values.get(setting, []))

    def noisy(self) -> list[Duel]:
        """The duels that could not tell at this threshold."""
        return [d for d in [*self.chain, self.baseline] if d is not None and d.judgement.verdict == "too noisy"]


def duel(values: dict[Setting, list[float]], reference: Setting, contender: Setting, min_gain: float, alpha: float = 0.05) -> Duel:
    change = estimate_change(values[reference], values[contender])
    return Duel(reference, contender, change, judge(change, min_gain, alpha=alpha, direction="lower"))


def decide(feasible: Sequence[Setting], complexity: Callable[[Setting], int], baseline: Setting, values: dict[Setting, list[float]], *,
           min_gain: float, baseline_feasible: bool = True, default: Setting | None = None, alpha: float = 0.05) -> Decision:
    """Choose among the ``feasible`` settings timed in ``values`` (module docstring); ``complexity``
    counts what a setting changes beyond the plain grid (a precision, each switch)."""
    timed = [s for s in dict.fromkeys(feasible) if run_value(values.get(s, [])) is not None]
    if not timed:
        raise ValueError("decide needs at least one feasible setting with timing rounds")
    ranked = sorted(timed, key=lambda s: run_value(values[s]) or math.inf)
    leader = ranked[0]
    chain = [leader]
    while complexity(chain[-1]) > 0:
        simpler = [s for s in ranked if complexity(s) < complexity(chain[-1])]
        if not simpler:
            break
        chain.append(simpler[0])
    duels: list[Duel] = []
    current = leader
    notes: list[str] = []
    for simpler in chain[1:]:
        d = duel(values, simpler, current, min_gain, alpha)
        duels.append(d)
        if d.faster:
            break
        notes.append(f"{current.label} not kept over {simpler.label}: {d.speedup:.2f}x, {d.judgement.verdict}"
                     + (f" ({d.judgement.note})" if d.judgement.note else "") + f"; a gain within the noise or under {min_gain:.0%} does not buy it")
        current = simpler
    against = duel(values, baseline, current, min_gain, alpha) if current != baseline and values.get(baseline) else None
    accepted = against is None or against.faster or not baseline_feasible
    if against is not None and not against.faster:
        if baseline_feasible:
            notes.append(f"{current.label} did not beat the baseline beyond the noise ({against.describe()}): the baseline stays")
        else:
            notes.append(f"{current.label} is kept although its gain on the baseline is not shown ({against.describe()}): "
                         "the baseline misses the constraints")
    chosen = current if accepted else baseline
    versus_default = duel(values, default, chosen, min_gain, alpha) if default is not None and default != chosen and default in values else None
    return Decision(leader, chosen, accepted, duels, against, versus_default, values, min_gain, notes)
