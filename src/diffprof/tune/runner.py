"""``tune()``: measure candidates as cells of a ``tune`` run and pick the fastest that holds quality.

Each candidate is an ordinary cell (suite ``tune``, labels stage/scheduler/steps/precision/
optimization) handed to the configured executor, like a sweep's: it gets the same warm-up, repeats,
memory cleaning and quality scoring as any benchmark (``measure_cell``), it can run in this process
(``serial``), in a worker process (``local``) or on a Ray cluster, and it is stored as it finishes
(:class:`~diffprof.suites.runner.RecordedRun`): ``diffprof show``, ``report`` and ``compare`` work on
a tune run like on any other. The search decides each cell from the last result, so cells go to
the executor one at a time (:class:`~diffprof.suites.runner.CellSubmitter`), and the pipelines its
workers load stay loaded between them.

The decision's timing rounds (:meth:`CellEvaluator.verify`) are cells too (stage ``time``, no
quality scored), handed out round by round across the settings timed and stored merged, with
per-round values, as a sweep's rounds are; the host's state over the whole tune is stored with the run.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.profiler.machine import MachineTracker
from diffprof.results import CellResult
from diffprof.suites.base import Cell
from diffprof.suites.executors import get_executor
from diffprof.suites.rounds import merge_rounds, round_of
from diffprof.suites.runner import CellSubmitter, RecordedRun, kept_on_interrupt
from diffprof.tune.constraints import TuneMetric, fidelity_rule, resolve_metric
from diffprof.tune.result import TuneResult, check_config_path, tuned_config, write_config
from diffprof.tune.search import MAX_ROUNDS, MIN_GAIN, Candidate, Search, Stage
from diffprof.tune.space import SearchSpace, Setting

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from diffprof.suites.executors.base import Executor

SUITE = "tune"
#: Prompts a confirmed candidate is scored on, unless told otherwise.
DEFAULT_PROMPTS = 8


class CellEvaluator:
    """Measures one setting as a ``tune`` cell: builds the cell, submits it, returns its result."""

    def __init__(self, config: RunConfig, metric: TuneMetric, submitter: CellSubmitter, fidelity: bool = False) -> None:
        self.config = config
        self.metric = metric
        self.submitter = submitter
        #: Also score convergence (PSNR/SSIM against the reference solve) for a fidelity floor.
        self.families = [metric.family] + (["convergence"] if fidelity and metric.family != "convergence" else [])
        #: Per setting timed: the cell its rounds are stored under, and its rounds merged so far.
        self._timed: dict[Setting, tuple[Cell, CellResult]] = {}

    def cell(self, setting: Setting, stage: Stage, prompts: int) -> Cell:
        """The cell for a setting: screens time one call with no warm-up (their time decides nothing)."""
        screen = stage == "screen"
        config = replace(
            self.config,
            scheduler=setting.scheduler,
            steps=setting.steps,
            precision=setting.precision,
            optimize=setting.switches,
            quality=list(self.families),
            quality_prompts=prompts,
            repeats=1 if screen else self.config.repeats,
            warmup=0 if screen else self.config.warmup,
        )
        labels = {
            "stage": stage, "scheduler": setting.scheduler, "steps": setting.steps,
            "precision": setting.precision, "optimization": setting.optimization,
        }
        return Cell(SUITE, labels, config)

    def __call__(self, setting: Setting, stage: Stage, prompts: int) -> CellResult:
        """A failed candidate (out of memory, a refused combination) is a failed cell: evidence, not a crash."""
        return self.submitter.run(self.cell(setting, stage, prompts))

    def timing_cell(self, setting: Setting, rounds: int) -> Cell:
        """A setting timed in ``rounds`` rounds of the config's calls per round, no quality scored."""
        per_round = max(1, self.config.repeats // max(1, self.config.rounds))
        config = replace(self.config, scheduler=setting.scheduler, steps=setting.steps, precision=setting.precision, optimize=setting.switches,
                         quality=[], repeats=per_round * rounds, rounds=rounds)
        labels = {"stage": "time", "scheduler": setting.scheduler, "steps": setting.steps, "precision": setting.precision,
                  "optimization": setting.optimization}
        return Cell(SUITE, labels, config)

    def verify(self, settings: Sequence[Setting], rounds: int) -> dict[Setting, list[float]]:
        """``rounds`` more rounds of ``settings``, interleaved (round r measures each, in an order
        rotated by r), each setting stored merged after every round; seconds per image of all its
        rounds so far, per setting (a failed round ends that setting's list)."""
        done = {s: self._timed[s][1].round_count if s in self._timed else 0 for s in settings}
        order = list(settings)
        for r in range(rounds):
            for setting in order[r % len(order):] + order[: r % len(order)]:
                stable, merged = self._timed.get(setting, (None, None))
                if merged is not None and not merged.ok:
                    continue
                total = done[setting] + rounds
                cell = self.timing_cell(setting, total)
                part = self.submitter.run(round_of(cell, done[setting] + r + 1), store=False)
                merged = merge_rounds([merged, part] if merged is not None else [part], total)
                stable = stable or cell
                if self.submitter.record is not None:
                    merged = self.submitter.record.add(stable, merged)
                self._timed[setting] = (stable, merged)
        return {s: [float(v) for v in self._timed[s][1].rounds.get("s_per_image", [])] if s in self._timed else [] for s in settings}


def tune(
    config: RunConfig | None = None,
    *,
    metric: str = "auto",
    min_quality: float | None = None,
    tolerance: float | None = None,
    min_psnr: float | None = None,
    min_gain: float = MIN_GAIN,
    max_rounds: int = MAX_ROUNDS,
    max_memory_gib: float | None = None,
    prompts: int = DEFAULT_PROMPTS,
    screen_prompts: int | None = None,
    space: SearchSpace | None = None,
    store: Any = None,
    output: str | Path | None = None,
    command: str = "",
    on_candidate: Callable[[Candidate], None] | None = None,
    executor: Executor | None = None,
) -> TuneResult:
    """Find the fastest setting of ``config.model`` that holds quality, and write it as a config.

    Args:
        config (`RunConfig`, *optional*): model, weights, device, size, guidance, prompt, threads,
            repeats, reference and CLIP settings; scheduler/steps/precision/optimize are searched.
        metric (`str`, defaults to ``auto``): ``adherence``, ``convergence`` (PSNR), ``clip`` or a
            metric name (``ssim``, ``latent_rel_error``); auto: adherence on shapes-sd, else PSNR.
        min_quality (`float`, *optional*): the floor; default: the baseline's quality less
            ``tolerance`` (2 points: 0.02 adherence, 2 dB PSNR, 2 CLIP score).
        min_psnr (`float`, *optional*): the fidelity floor, mean PSNR in dB against the reference
            solve; default: :data:`~diffprof.tune.constraints.FIDELITY_TOLERANCE_DB` below the
            baseline's when ``metric`` is adherence or CLIP (a convergence metric holds fidelity
            itself); 0: none.
        min_gain (`float`, defaults to 0.05): the gain over the baseline, and of a switch over the
            setting without it, that must be beyond the noise of rounds timed together
            (``config.rounds`` of them; up to ``max_rounds`` when a verdict is too noisy).
        max_memory_gib (`float`, *optional*): cap on peak memory (CUDA allocator on GPU, host RSS on CPU).
        prompts (`int`, defaults to 8): prompts each confirmed candidate is scored on; screens use a quarter.
        space (`SearchSpace`, *optional*): default :meth:`SearchSpace.for_device`.
        store: a :class:`~diffprof.store.Store` or a path; every candidate is stored as a ``tune`` run.
        output: where to write the tuned config (.yaml/.json); None writes nothing.
        executor: run candidates on this executor instead of the one ``config.executor`` names.

    Raises:
        NoConfigMeetsConstraints: nothing measured meets the constraints; the message names the
            closest achievable point and ``.result`` holds the evidence.
    """
    from diffprof.engine.devices import resolve_engine_device

    # 1. Check everything before measuring anything.
    config = config or RunConfig()
    config.validate()
    from diffprof.suites.checks import check_config

    check_config(config)  # registry names: the schema's validate checks only types, ranges and static choices
    device = resolve_engine_device(config.device)
    tune_metric = resolve_metric(metric, config.model)
    fidelity = fidelity_rule(tune_metric, min_psnr)
    if not (0 < min_gain < 1):
        raise ConfigError(f"--min-gain must be between 0 and 1 (a fraction), got {min_gain}", "e.g. --min-gain 0.05 (5%)")
    if tune_metric.family == "clip" and not config.clip_model:
        raise ConfigError("tuning for CLIP score needs a CLIP model", "pass --clip-model PATH (a local CLIP folder) or a hub id")
    if not isinstance(prompts, int) or prompts < 1:
        raise ConfigError(f"prompts must be a whole number >= 1, got {prompts!r}", "e.g. --prompts 8")
    screen = screen_prompts if screen_prompts is not None else max(2, prompts // 4)
    if screen < 1:
        raise ConfigError(f"screen prompts must be >= 1, got {screen}", "screens score a quarter of --prompts (at least 2): give --prompts 4 or more")
    if max_memory_gib is not None and max_memory_gib <= 0:
        raise ConfigError(f"--max-memory must be a positive number of GiB, got {max_memory_gib}", "e.g. --max-memory 24 for a 24 GB card")
    if output is not None:
        check_config_path(output)
    from diffprof.models.resolve import resolve_source

    resolve_source(config.model, config.weights)  # a model that cannot load: say so, not "no candidate could be measured"
    space = space or SearchSpace.for_device(device, model=config.model)
    memory_metric = "peak_allocated_bytes" if device.type == "cuda" else "host_peak_rss_bytes"
    if config.threads:
        torch.set_num_threads(config.threads)
    executor = executor or get_executor(config)
    executor.check()  # before the store: a setup that cannot run stores nothing
    # 2. A stored run holds every candidate as it is measured.
    owned = isinstance(store, (str, Path))
    if owned:
        from diffprof.store import Store

        store = Store(str(store))
    record = RecordedRun.create(store, config, command or f"diffprof tune --model {config.model}") if store is not None else None
    # 3. Search, one cell at a time on the executor, the host's state tracked beside it.
    submitter = CellSubmitter(executor, record=record)
    evaluator = CellEvaluator(config, tune_metric, submitter, fidelity=fidelity is not None)
    search = Search(
        evaluator, space, tune_metric, prompts=prompts, screen_prompts=screen, min_quality=min_quality,
        tolerance=tolerance, max_memory_bytes=max_memory_gib * 2**30 if max_memory_gib is not None else None, memory_metric=memory_metric,
        on_candidate=on_candidate, fidelity=fidelity, verify=evaluator.verify, min_gain=min_gain, rounds=config.rounds,
        max_rounds=max_rounds, default=space.diffprof_default,
    )
    t0 = time.perf_counter()
    status = "interrupted"
    tracker = MachineTracker()
    machine = None
    try:
        with tracker.track() as machine:
            outcome = search.run()
        status = "finished"
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: the candidates measured so far are stored; say which run holds them
        if record is None:
            raise
        stopped = kept_on_interrupt(exc, store, record.run_id, None)
        if stopped is exc:
            raise
        raise stopped from None
    finally:
        submitter.close()  # stops the executor's workers
        if record is not None:
            if machine is not None:
                record.add_machine(machine)
            record.close(status)
        if owned and store is not None:
            store.close()  # a store this call opened is one checkpointed file again when it returns
    # 4. The result, the written config, or the error naming the closest point.
    result = TuneResult.from_outcome(
        outcome, model=config.model, device=str(device), space=space, prompts=prompts,
        run_id=record.run_id if record is not None else None, seconds=time.perf_counter() - t0,
        machine=machine.to_dict() if machine is not None else None,
    )
    if result.chosen is None:
        raise result.infeasible_error()
    result.config = tuned_config(config, result)
    if output is not None:
        result.config_path = write_config(result.config, output, result)
    return result
