"""The search: the fastest setting that holds quality, measuring a small part of the grid.

Two facts make it cheap. Quality depends on scheduler, steps and precision, barely on layout or
compilation switches; and time grows with UNet calls, so once a setting holds quality at N calls,
no setting needing more calls at the same precision can be faster. Phases:

1. **baseline**: the default diffusers setup, scored on every prompt; its quality less the
   tolerance is the floor unless one is given.
2. **grid** (scheduler x steps at the baseline's precision): for each scheduler, step counts in
   rising order, each *screened* on a subset of the prompts (a mean that may fall ``slack``
   short of the floor), and *confirmed* on all prompts if it passes; a scheduler stops at its
   first confirmed step count, and step counts needing more UNet calls than the cheapest
   confirmed setting so far are skipped (successive halving on prompts, pruning on cost).
3. **speed**: every other precision x optimization set on the ``top`` fastest confirmed
   settings (fastest first; a slower one only while the variant's speed ratio, learnt on the
   fastest, says it could still win); a variant that loses quality (bf16) climbs step counts
   while its estimated time could still beat the best.
4. With nothing feasible, the best screened settings are confirmed so the closest achievable
   point is measured on all prompts before it is named.

5. **decide**: the fastest feasible candidate (the leader), the simpler settings it would replace,
   the baseline and diffprof's default are timed together in interleaved rounds, and the leader is
   chosen only where its gain is beyond the noise (:mod:`diffprof.tune.decide`); a verdict too
   noisy to tell gets more rounds once, up to ``max_rounds``.

The choice is the fastest *measured* candidate scored on all prompts that meets every constraint
and whose gain the timing rounds back. The evaluator and the timer are injected, so tests run the
search on synthetic cells and synthetic rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from diffprof.errors import DiffprofError
from diffprof.results import CellResult
from diffprof.tune.constraints import FIDELITY_METRIC, FIDELITY_SLACK_DB, Constraints, FidelityRule, TuneMetric, default_target
from diffprof.tune.decide import Decision, decide
from diffprof.tune.space import SearchSpace, Setting, unet_calls

#: Allowance for timing noise when an *estimated* time decides that a setting cannot win: it is
#: skipped only when the estimate is this much slower than the best measured one.
NOISE = 0.10

Stage = Literal["baseline", "screen", "confirm", "speed"]
#: ``(setting, stage, prompts) -> measured cell`` (failed cells are data, not exceptions).
Evaluate = Callable[[Setting, Stage, int], CellResult]
#: ``(settings, rounds) -> {setting: seconds per image of every round timed so far}``: ``rounds``
#: more rounds of the settings, interleaved across them, no quality scored.
Verify = Callable[[Sequence[Setting], int], dict[Setting, list[float]]]
#: Gain over the baseline (and of a switch over the setting without it) tune needs beyond the noise.
MIN_GAIN = 0.05
#: Timing rounds of the decision, and the most a too-noisy verdict may ask for.
ROUNDS, MAX_ROUNDS = 3, 12


class TuneError(DiffprofError):
    """Tuning cannot answer: no baseline to hold to, or no setting meets the constraints."""


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass
class Candidate:
    """One evaluated setting: its cell, its headline numbers and how they compare to the constraints."""

    setting: Setting
    stage: Stage
    prompts: int
    cell: CellResult
    seconds_per_image: float
    quality: float
    memory_bytes: float | None
    meets_quality: bool
    meets_memory: bool
    full: bool  # scored on every prompt (screens are not)
    fidelity: float = math.nan  # mean PSNR against the reference solve, where a fidelity floor is held
    meets_fidelity: bool = True

    @property
    def ok(self) -> bool:
        return self.cell.ok

    @property
    def feasible(self) -> bool:
        """Measured, scored on every prompt, and within every constraint."""
        return self.ok and self.full and self.meets_quality and self.meets_fidelity and self.meets_memory

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "failed"
        if self.full and self.feasible:
            return "meets"
        reasons = [r for r, ok in (("quality", self.meets_quality), ("fidelity", self.meets_fidelity), ("memory", self.meets_memory)) if not ok]
        verdict = "meets" if not reasons else "misses " + " and ".join(reasons)
        return verdict if self.full else f"screen {verdict}"


@dataclass
class SearchOutcome:
    baseline: Candidate
    candidates: list[Candidate]
    constraints: Constraints
    chosen: Candidate | None
    decision: Decision | None = None


class Search:
    """One search over ``space`` (see the module docstring for the phases).

    Args:
        evaluate: measures a setting (time, memory and ``metric``) on a number of prompts.
        metric: the quality metric held to.
        prompts (`int`): prompts a confirmed candidate is scored on.
        screen_prompts (`int`): prompts a screen is scored on (``>= prompts`` disables screening).
        min_quality (`float`, *optional*): the floor; default: the baseline's quality less ``tolerance``.
        tolerance (`float`, *optional*): default: the metric's ("2 points").
        max_memory_bytes (`float`, *optional*): cap on ``memory_metric``.
        top (`int`, defaults to 3): confirmed settings the speed phase varies.
        on_candidate: called with every candidate as it is measured (progress output).
        fidelity (`FidelityRule`, *optional*): how the fidelity floor (mean PSNR against the
            reference solve) is set (None: none).
        verify: times settings in interleaved rounds for the decision (None: choose on the search's
            single measurements, as before rounds).
        min_gain (`float`, defaults to 0.05): the gain the decision needs beyond the noise.
        rounds, max_rounds: the decision's timing rounds, and the most a too-noisy verdict gets.
        default: diffprof's own default setting, timed beside the baseline for the summary.
    """

    def __init__(
        self,
        evaluate: Evaluate,
        space: SearchSpace,
        metric: TuneMetric,
        *,
        prompts: int,
        screen_prompts: int,
        min_quality: float | None = None,
        tolerance: float | None = None,
        max_memory_bytes: float | None = None,
        memory_metric: str = "host_peak_rss_bytes",
        top: int = 3,
        on_candidate: Callable[[Candidate], None] | None = None,
        fidelity: FidelityRule | None = None,
        verify: Verify | None = None,
        min_gain: float = MIN_GAIN,
        rounds: int = ROUNDS,
        max_rounds: int = MAX_ROUNDS,
        default: Setting | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.space = space
        self.metric = metric
        self.prompts = prompts
        self.screen_prompts = min(screen_prompts, prompts)
        self.min_quality = min_quality
        self.tolerance = tolerance
        self.max_memory_bytes = max_memory_bytes
        self.memory_metric = memory_metric
        self.top = top
        self.on_candidate = on_candidate
        self.fidelity = fidelity
        self.verify = verify
        self.min_gain = min_gain
        self.rounds = max(2, rounds)
        self.max_rounds = max(self.rounds, max_rounds)
        self.default = default
        self.candidates: list[Candidate] = []
        self._memo: dict[tuple[Setting, int], Candidate] = {}
        self.constraints: Constraints | None = None

    # ------------------------------------------------------------------ phases
    def run(self) -> SearchOutcome:
        # 1. Baseline, and the floor it sets.
        base_cell = self.evaluate(self.space.baseline, "baseline", self.prompts)
        if not base_cell.ok and self.min_quality is None:
            raise TuneError(
                f"the baseline ({self.space.baseline.label}) failed, so there is no quality to hold to: {base_cell.error}",
                "pass --min-quality to tune without the baseline's score",
            )
        quality = base_cell.metrics.get(self.metric.name, math.nan) if base_cell.ok else math.nan
        target = self.min_quality if self.min_quality is not None else default_target(self.metric, quality, self.tolerance)
        floor = self.fidelity.target(float(base_cell.metrics.get(FIDELITY_METRIC, math.nan)) if base_cell.ok else math.nan) if self.fidelity else None
        self.constraints = Constraints(self.metric, float(target), self.max_memory_bytes, self.memory_metric, floor)
        baseline = self._record(self.space.baseline, "baseline", self.prompts, base_cell)
        # 2. Scheduler x steps at the grid precision: screen, confirm, prune.
        best_calls = math.inf
        for scheduler in self.space.schedulers:
            for steps in self.space.steps:
                setting = self.space.grid_setting(scheduler, steps)
                if unet_calls(setting) > best_calls:
                    break
                if self.screen_prompts < self.prompts:
                    screen = self._measure(setting, "screen", self.screen_prompts)
                    if not (screen.ok and self.constraints.meets_quality(screen.quality, self.metric.slack)
                            and self.constraints.meets_fidelity(screen.fidelity, FIDELITY_SLACK_DB)):
                        continue
                full = self._measure(setting, "confirm", self.prompts)
                if full.ok and full.meets_quality and full.meets_fidelity:
                    best_calls = min(best_calls, unet_calls(setting))
                    break
        # 3. Speed variants of the fastest confirmed settings.
        grid = (self.space.first_precision, self.space.first_optimization)
        seeds = sorted(
            (c for c in self.candidates
             if c.full and c.ok and c.meets_quality and c.meets_fidelity and (c.setting.precision, c.setting.optimization) == grid),
            key=lambda c: c.seconds_per_image,
        )[: self.top]
        variants = [(p, o) for p in self.space.precisions for o in self.space.optimizations if (p, o) != grid]
        for precision, optimization in variants:
            ratio = None  # the variant's time over the grid's, learnt on the fastest seed
            for seed in seeds:
                best = self.best()
                if ratio is not None and best is not None and seed.seconds_per_image * ratio >= best.seconds_per_image * (1 + NOISE):
                    continue
                first = self._climb(seed.setting, precision, optimization)
                if ratio is None and first.ok and seed.seconds_per_image > 0:
                    ratio = first.seconds_per_image / seed.seconds_per_image
        # 4. Nothing feasible: measure the most promising screens on every prompt.
        if self.best() is None:
            confirmed = {c.setting for c in self.candidates if c.full}
            screened = [c for c in self.candidates if not c.full and c.ok and c.setting not in confirmed and _finite(c.quality)]
            screened.sort(key=lambda c: -c.quality if self.metric.direction == "higher" else c.quality)
            for c in screened[: self.top]:
                self._measure(c.setting, "confirm", self.prompts)
        # 5. Decide on rounds timed together: a gain within the noise does not choose.
        leader = self.best()
        decision = self._decide(leader, baseline) if leader is not None and self.verify is not None else None
        chosen = leader
        if decision is not None:
            chosen = next(c for c in [baseline, *self.candidates] if c.setting == decision.chosen and (c is baseline or c.feasible))
        return SearchOutcome(baseline, list(self.candidates), self.constraints, chosen, decision)

    def complexity(self, setting: Setting) -> int:
        """What a setting changes beyond the grid's precision and optimization (a precision, each switch)."""
        grid = set(Setting("", 0, "", self.space.first_optimization).switches)
        return int(setting.precision != self.space.first_precision) + len(set(setting.switches) - grid)

    def contenders(self) -> list[Setting]:
        """What the decision times: the ``top`` fastest feasible settings and, at each lower
        complexity, the fastest feasible one (by the search's single measurements)."""
        feasible = sorted((c for c in self.candidates if c.feasible), key=lambda c: c.seconds_per_image)
        chosen = [c.setting for c in feasible[: self.top]]
        for level in range(max((self.complexity(s) for s in chosen), default=0)):
            chosen += [c.setting for c in feasible if self.complexity(c.setting) <= level][:1]
        return list(dict.fromkeys(chosen))

    def _decide(self, leader: Candidate, baseline: Candidate) -> Decision:
        assert self.verify is not None
        feasible = self.contenders()
        timed = list(dict.fromkeys([*feasible, baseline.setting, *([self.default] if self.default is not None else [])]))

        def decided(values: dict[Setting, list[float]]) -> Decision:
            return decide(feasible, self.complexity, baseline.setting, values, min_gain=self.min_gain, baseline_feasible=baseline.feasible,
                          default=self.default)

        decision = decided(self.verify(timed, self.rounds))
        noisy = decision.noisy()
        # once: what the noisy verdicts asked for, within the maximum; the maximum where they ask for
        # more (at the threshold), which still settles a gain far beyond it
        asked = [min(d.judgement.rounds_needed or self.max_rounds, self.max_rounds) for d in noisy]
        more = max(asked, default=0) - decision.rounds
        if more > 0:
            decision = decided(self.verify(timed, more))
        return decision

    def _climb(self, start: Setting, precision: str, optimization: str) -> Candidate:
        """``start``'s scheduler at ``precision``/``optimization``, from its step count upwards
        until quality holds or the next step count could not be the fastest anyway; returns the
        first candidate measured."""
        counts = [n for n in self.space.steps if n >= start.steps] or [start.steps]
        first: Candidate | None = None
        for i, steps in enumerate(counts):
            setting = Setting(start.scheduler, steps, precision, optimization)
            c = self._measure(setting, "speed", self.prompts)
            first = first or c
            if not c.ok or c.meets_quality or i + 1 == len(counts):
                break
            best = self.best()
            nxt = Setting(start.scheduler, counts[i + 1], precision, optimization)
            estimate = c.seconds_per_image * unet_calls(nxt) / unet_calls(setting)
            if best is not None and estimate >= best.seconds_per_image * (1 + NOISE):
                break
        return first  # type: ignore[return-value]  # counts is never empty

    # ----------------------------------------------------------------- helpers
    def best(self) -> Candidate | None:
        """The fastest feasible candidate (ties: the better quality, then the earlier)."""
        feasible = [c for c in self.candidates if c.feasible]
        if not feasible:
            return None
        sign = -1.0 if self.metric.direction == "higher" else 1.0
        return min(feasible, key=lambda c: (c.seconds_per_image, sign * c.quality))

    def _measure(self, setting: Setting, stage: Stage, prompts: int) -> Candidate:
        key = (setting, prompts)
        if key not in self._memo:
            self._memo[key] = self._record(setting, stage, prompts, self.evaluate(setting, stage, prompts))
        return self._memo[key]

    def _record(self, setting: Setting, stage: Stage, prompts: int, cell: CellResult) -> Candidate:
        if self.constraints is None:  # pragma: no cover - run() sets them from the baseline first
            raise RuntimeError("constraints are set from the baseline before any candidate is recorded")
        time = float(cell.metrics.get("s_per_image", math.nan)) if cell.ok else math.nan
        quality = float(cell.metrics.get(self.metric.name, math.nan)) if cell.ok else math.nan
        fidelity = float(cell.metrics.get(FIDELITY_METRIC, math.nan)) if cell.ok else math.nan
        memory = cell.metrics.get(self.memory_metric) if cell.ok else None
        candidate = Candidate(
            setting=setting,
            stage=stage,
            prompts=prompts,
            cell=cell,
            seconds_per_image=time,
            quality=quality,
            memory_bytes=float(memory) if memory is not None and _finite(memory) else None,
            meets_quality=self.constraints.meets_quality(quality),
            meets_memory=self.constraints.meets_memory(memory),
            full=prompts >= self.prompts,
            fidelity=fidelity,
            meets_fidelity=self.constraints.meets_fidelity(fidelity),
        )
        self._memo.setdefault((setting, prompts), candidate)
        self.candidates.append(candidate)
        if self.on_candidate is not None:
            self.on_candidate(candidate)
        return candidate
