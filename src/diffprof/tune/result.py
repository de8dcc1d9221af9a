"""What tuning found: every candidate measured, the one chosen, and the evidence behind it.

:class:`TuneResult` is plain data (candidates keep their cells); :meth:`TuneResult.table` renders
the evidence for the terminal and :func:`write_config` writes the chosen setting as a config file
that ``diffprof bench --config`` and ``diffprof generate --config`` run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffprof.analysis.pareto import pareto_front
from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.results import FAST_PATH_NOTE, NOTE_KEYS
from diffprof.tune.constraints import FIDELITY_METRIC, Constraints, TuneMetric
from diffprof.tune.decide import Decision
from diffprof.tune.search import Candidate, SearchOutcome, TuneError
from diffprof.tune.space import SearchSpace
from diffprof.units import fmt_bytes, fmt_seconds

if TYPE_CHECKING:
    from rich.table import Table


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def fmt_quality(value: float) -> str:
    return "-" if not _finite(value) else ("inf" if math.isinf(value) else f"{value:.4g}")


@dataclass
class TuneResult:
    """The outcome of :func:`diffprof.tune.tune`.

    Attributes:
        chosen: the fastest candidate meeting every constraint whose gain the timing rounds back (the
            baseline when none beat it beyond the noise); ``None`` when none meets the constraints (then
            :func:`~diffprof.tune.tune` raises :class:`NoConfigMeetsConstraints` carrying this result).
        decision: what the timing rounds decided (None for a search run without them).
        machine: the host's state while tune measured (:mod:`diffprof.profiler.machine`).
        config: the chosen setting as a full :class:`RunConfig` (``None`` with ``chosen``).
        config_path: where that config was written, if it was.
        run_id: the stored run (suite ``tune``) holding every candidate's cell.
    """

    model: str
    device: str
    metric: TuneMetric
    constraints: Constraints
    space: SearchSpace
    prompts: int
    baseline: Candidate
    candidates: list[Candidate]
    chosen: Candidate | None
    config: RunConfig | None = None
    config_path: Path | None = None
    run_id: int | None = None
    seconds: float = 0.0
    decision: Decision | None = None
    machine: dict[str, Any] | None = None

    @classmethod
    def from_outcome(
        cls, outcome: SearchOutcome, *, model: str, device: str, space: SearchSpace, prompts: int,
        run_id: int | None = None, seconds: float = 0.0, machine: dict[str, Any] | None = None,
    ) -> TuneResult:
        return cls(
            model=model, device=device, metric=outcome.constraints.metric, constraints=outcome.constraints, space=space,
            prompts=prompts, baseline=outcome.baseline, candidates=outcome.candidates, chosen=outcome.chosen,
            run_id=run_id, seconds=seconds, decision=outcome.decision, machine=machine,
        )

    @property
    def speedup(self) -> float | None:
        """Baseline time per image over the chosen one's: from the timing rounds where they decided
        (geometric means of rounds timed together), else from the search's single measurements."""
        if self.chosen is None:
            return None
        d = self.decision
        if d is not None:
            return 1.0 if d.baseline is None or d.chosen == self.baseline.setting else d.baseline.speedup
        if not _finite(self.baseline.seconds_per_image) or not self.chosen.seconds_per_image:
            return None
        return self.baseline.seconds_per_image / self.chosen.seconds_per_image

    @property
    def default_speedup(self) -> float | None:
        """diffprof's own default (20 steps) time per image over the chosen one's, from the timing rounds."""
        if self.chosen is None or self.decision is None:
            return None
        if self.decision.default is None:
            return 1.0 if self.chosen.setting == self.space.diffprof_default else None
        return self.decision.default.speedup

    def _speeds(self) -> str:
        """What the chosen setting's speed is measured against, and how sure the rounds are."""
        d = self.decision
        parts = [f"{self.speedup:.2f}x faster than the baseline"] if self.speedup else []
        if self.default_speedup:
            parts.append(f"{self.default_speedup:.2f}x than diffprof's default ({self.space.diffprof_default.label})")
        if d is not None and d.rounds:
            parts.append(f"timed together in {d.rounds} rounds, gains judged at {d.min_gain:.0%} beyond the noise")
        return f" ({'; '.join(parts)})" if parts else ""

    @property
    def scored(self) -> list[Candidate]:
        """Candidates measured and scored on every prompt: the comparable ones."""
        return [c for c in self.candidates if c.ok and c.full]

    @property
    def front(self) -> list[Candidate]:
        """The Pareto front of time against quality over :attr:`scored`, fastest first."""
        scored = self.scored
        idx = pareto_front([c.seconds_per_image for c in scored], [c.quality for c in scored], self.metric.direction)
        return [scored[i] for i in idx]

    def closest(self) -> Candidate | None:
        """The achievable point nearest the constraints: within memory, the best quality (ties:
        the faster); when nothing fits in memory, the smallest."""
        scored = self.scored
        fitting = [c for c in scored if c.meets_memory and _finite(c.quality)]
        sign = -1.0 if self.metric.direction == "higher" else 1.0
        if fitting:
            return min(fitting, key=lambda c: (sign * c.quality, c.seconds_per_image))
        measured = [c for c in scored if c.memory_bytes is not None]
        return min(measured, key=lambda c: c.memory_bytes or 0.0) if measured else None

    def infeasible_error(self) -> NoConfigMeetsConstraints:
        """The error naming the closest achievable point (raised when :attr:`chosen` is None)."""
        k = self.constraints
        metric = self.metric.name
        op = ">=" if self.metric.direction == "higher" else "<="
        best = self.closest()
        widen = "or widen the search (--schedulers, --step-counts, --precisions, --optimizations)"
        if best is None:
            return NoConfigMeetsConstraints("no candidate could be measured; see the failures above", "fix the first failure and run again", self)
        if not best.meets_memory:
            return NoConfigMeetsConstraints(
                f"no config fits {k.memory_metric} <= {fmt_bytes(k.max_memory_bytes)}; "
                f"the smallest is {fmt_bytes(best.memory_bytes)} with {best.setting.label} ({fmt_seconds(best.seconds_per_image)}/image)",
                f"raise --max-memory to at least {fmt_bytes(best.memory_bytes)}, {widen}",
                self,
            )
        within = f" within {fmt_bytes(k.max_memory_bytes)}" if k.max_memory_bytes is not None else ""
        return NoConfigMeetsConstraints(
            f"no config{within} reaches {metric} {op} {k.target:.4g}; best is {fmt_quality(best.quality)} with "
            f"{best.setting.label} ({fmt_seconds(best.seconds_per_image)}/image)",
            f"ask for --min-quality {fmt_quality(best.quality)} or {'less' if op == '>=' else 'more'}, {widen}",
            self,
        )

    def _seconds(self, c: Candidate) -> float:
        timed = self.decision.seconds(c.setting) if self.decision is not None else None
        return timed if timed is not None else c.seconds_per_image

    def _scores(self, c: Candidate) -> str:
        text = f"{self.metric.name} {fmt_quality(c.quality)}"
        return text + (f", {FIDELITY_METRIC} {fmt_quality(c.fidelity)}" if self.constraints.fidelity is not None else "")

    def summary(self) -> str:
        """The choice and what it is faster than, the baseline (what it is) and the constraints, then notes."""
        b = self.baseline
        base = (f"baseline {b.setting.label} (the diffusers default: the model's own scheduler at {b.setting.steps} steps, no optimizations): "
                f"{fmt_seconds(self._seconds(b))}/image, {self._scores(b)}")
        settings = len({c.setting for c in self.candidates if c is not self.baseline})
        searched = f"{settings} of {self.space.size} settings measured ({len(self.candidates)} measurements with the baseline and screens) in {self.seconds:.0f} s"
        if self.chosen is None:
            return f"no config meets {self.constraints.describe()}\n{base}; {searched}"
        c = self.chosen
        d = self.decision
        if d is not None and c is b:
            why = "no setting beat it beyond the noise" if d.leader != b.setting else "no faster setting meets the constraints"
            head = f"chosen: the baseline, {c.setting.label}: {why}"
        else:
            head = f"chosen: {c.setting.label}: {fmt_seconds(self._seconds(c))}/image, {self._scores(c)}{self._speeds()}"
        fallback = c.cell.settings.get(FAST_PATH_NOTE)
        others = [str(c.cell.settings[k]) for k in NOTE_KEYS if k != FAST_PATH_NOTE and c.cell.settings.get(k)]
        notes = list(d.notes) if d is not None else []
        from diffprof.analysis.machine import host_load

        load = host_load(self.machine)
        if load.busy:
            notes.append(f"host busy while tune measured ({load.reason}); the timing rounds interleave the settings, so the load fell on each "
                         "of them, and its noise is in their test")
        return (
            f"{head}\n{base}; constraints {self.constraints.describe()}; {searched}"
            + "".join(f"\nnote: {n}" for n in notes)
            + (f"\nnote: the chosen setting did not run as its optimizations asked: {fallback}" if fallback else "")
            + "".join(f"\nnote: {n}" for n in others)
        )

    def rows(self) -> list[dict[str, Any]]:
        """The evidence, one dict per candidate in the order measured (formatted text)."""
        out = []
        front = {id(c) for c in self.front}
        for i, c in enumerate(self.candidates, 1):
            s = c.setting
            speedup = self.baseline.seconds_per_image / c.seconds_per_image if c.ok and _finite(self.baseline.seconds_per_image) and c.seconds_per_image else None
            note = "◀ chosen" if c is self.chosen else ("baseline" if c is self.baseline else "")
            verdict = c.verdict + (f": {c.cell.error}" if not c.ok and c.cell.error else "")
            out.append({
                "#": str(i), "stage": c.stage, "scheduler": s.scheduler, "steps": str(s.steps), "precision": s.precision,
                "optimizations": s.optimization, "s/image": fmt_seconds(c.seconds_per_image) if c.ok else "-",
                "speedup": f"{speedup:.2f}x" if speedup else "-", self.metric.name: fmt_quality(c.quality),
                "prompts": str(c.prompts), "memory": fmt_bytes(c.memory_bytes), "pareto": "●" if id(c) in front else "",
                "verdict": verdict[:80], "note": note,
            })
            if self.constraints.fidelity is not None:
                out[-1][FIDELITY_METRIC] = fmt_quality(c.fidelity)
        return out

    def decision_table(self) -> Table | None:
        """The timing rounds the choice was decided on: each setting's rounds, their geometric mean,
        and its verdict against the baseline (None without a decision)."""
        from rich.table import Table

        d = self.decision
        if d is None:
            return None
        from diffprof.tune.decide import duel

        table = Table(title=f"decided on {d.rounds} rounds timed together (gain needed: {d.min_gain:.0%}, beyond the noise)", title_justify="left")
        for name, right in (("setting", False), ("rounds (s/image)", False), ("s/image", True), ("vs baseline", False)):
            table.add_column(name, justify="right" if right else "left", overflow="fold")
        for setting, values in d.values.items():
            role = " (baseline)" if setting == self.baseline.setting else " (diffprof default)" if setting == self.space.diffprof_default else ""
            versus = ""
            if setting != self.baseline.setting and values and d.values.get(self.baseline.setting):
                x = duel(d.values, self.baseline.setting, setting, d.min_gain)
                versus = f"{x.speedup:.2f}x: {x.judgement.verdict}" + (f" ({x.judgement.note})" if x.judgement.note else "")
            style = "bold green" if self.chosen is not None and setting == self.chosen.setting else None
            table.add_row(setting.label + role, " ".join(fmt_seconds(v) for v in values), fmt_seconds(d.seconds(setting) or math.nan), versus, style=style)
        return table

    def table(self) -> Table:
        """The evidence as a compact rich table: one row per measurement, the setting in one
        column, marks for the baseline, the chosen row (bold green), the Pareto front (●) and
        screens (dim, scored on fewer prompts); failures in red."""
        from rich.table import Table

        title = f"diffprof tune: {self.model} on {self.device}; {self.constraints.describe()}"
        table = Table(title=title, title_justify="left", caption=f"{self.metric.name} on {self.prompts} prompts; screens on fewer (in brackets); ● Pareto front", caption_justify="left")
        fidelity = self.constraints.fidelity is not None
        columns = [("#", True), ("stage", False), ("setting", False), ("s/image", True), ("speedup", True), (self.metric.name, True)]
        columns += [(FIDELITY_METRIC, True)] if fidelity else []
        for name, right in (*columns, ("memory", True), ("verdict", False)):
            table.add_column(name, justify="right" if right else "left", overflow="fold", no_wrap=right)
        for row, c in zip(self.rows(), self.candidates):
            setting = f"{c.setting.scheduler}/{c.setting.steps} {c.setting.precision}"
            setting += f" {c.setting.optimization}" if c.setting.optimization != "none" else ""
            quality = row[self.metric.name] + ("" if c.full else f" ({c.prompts})")
            verdict = " ".join(v for v in (row["pareto"], row["verdict"], row["note"]) if v)
            style = "bold green" if c is self.chosen else ("red" if not c.ok else ("dim" if not c.full else None))
            scores = [quality, row[FIDELITY_METRIC]] if fidelity else [quality]
            table.add_row(row["#"], c.stage, setting, row["s/image"], row["speedup"], *scores, row["memory"], verdict, style=style)
        return table


class NoConfigMeetsConstraints(TuneError):
    """No measured setting meets the constraints; ``result`` holds the evidence."""

    def __init__(self, message: str, hint: str | None, result: TuneResult) -> None:
        super().__init__(message, hint)
        self.result = result


def tuned_config(base: RunConfig, result: TuneResult) -> RunConfig:
    """The chosen setting on top of ``base``: a config that runs the tuned generation.

    Device and precision are written resolved (they were chosen for this device), the suite is
    ``generation`` so ``bench --config`` measures exactly this setting, and quality is scored
    the way tune scored it, so the bench shows the number the choice was held to.
    """
    if result.chosen is None:
        raise result.infeasible_error()
    s = result.chosen.setting
    values = replace(
        base,
        scheduler=s.scheduler,
        steps=s.steps,
        precision=s.precision,
        optimize=s.switches,
        device=result.device,
        suites=["generation"],
        quality=[result.metric.family] + (["convergence"] if result.constraints.fidelity is not None and result.metric.family != "convergence" else []),
        quality_prompts=result.prompts,
        # where results go is the later command's choice: the tuning store and report are not
        db=RunConfig.default_of("db"),
        report=RunConfig.default_of("report"),
    ).to_dict()
    return RunConfig.from_mapping(values)


#: Extensions :meth:`RunConfig.save` writes.
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def check_config_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"cannot write a config to {path.name!r}", "name a .yaml, .yml or .json file")
    return path


def write_config(config: RunConfig, path: str | Path, result: TuneResult) -> Path:
    """Save ``config`` (YAML or JSON by extension); YAML gets the evidence summary as a header comment."""
    path = check_config_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config.save(path)
    if path.suffix in (".yaml", ".yml"):
        header = ["# Written by diffprof tune. Run it: diffprof generate --config FILE \"prompt\" | diffprof bench --config FILE"]
        header += [f"# {line}" for line in result.summary().splitlines()]
        path.write_text("\n".join(header) + "\n" + path.read_text())
    return path
