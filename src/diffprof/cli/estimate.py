"""`diffprof calibrate` and `diffprof estimate`: plan hardware before running (issue #6).

`calibrate` measures the `calibration` suite (3 sizes x 2 batches, few steps) into the store as an
ordinary run and prints the fitted cost model; `estimate` predicts time and peak memory of any size,
batch and step count from it, and with `--max-memory` picks the fastest memory optimizations that fit.

Exit codes: 0 ok (also when `estimate --max-memory` finds nothing that fits: that is its answer,
printed, and ``"fits": false`` in JSON; 1 is `compare`'s regression code); 2 bad input or no
calibration (the hint is the `diffprof calibrate` command to run), or a calibration measured on a busy
host (stored, not used; ``--force`` keeps it); 3 some calibration cells failed.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from diffprof.cli.app import CONTINUE, app, console, err_console
from diffprof.cli.options import config_options
from diffprof.cli.stores import db_option
from diffprof.config import RunConfig, from_text, split_values
from diffprof.config.spec import Spec
from diffprof.interrupts import Kept

H = RunConfig.help_for
GIB = 2**30
CELLS_FAILED = 3
#: estimate's own options, checked as config fields are (finite, in range).
_MAX_MEMORY = Spec("max_memory", "", "", type=float, default=24.0, optional=True, flag="--max-memory", noun="--max-memory (GiB)")
_HEADROOM = Spec("headroom", "", "", type=float, default=1.0, minimum=0, flag="--headroom", noun="--headroom (GiB)")
#: estimate's guidance is optional (default: as calibrated); the rest check as the schema's fields.
ESTIMATE_SPECS = {"guidance": Spec("guidance", "", "", type=float, optional=True, minimum=0, maximum=1000.0, flag="--guidance")}


def _split(values: list[str] | None) -> list[str]:
    return split_values(values or [])


def _continue_calibrate(kept: Kept, args: list[str]) -> str:
    db = shlex.quote(kept.db)
    return (f"resume: diffprof bench --resume {kept.run_id} --db {db} (the calibration's remaining cells), "
            f"then: diffprof estimate --run {kept.run_id} --db {db} ...")


CONTINUE["calibrate"] = _continue_calibrate


@app.command()
@config_options("calibrate")
def calibrate(
    steps: int = typer.Option(4, help="Denoising steps per calibration call (step time is per step, so few suffice)."),
    resolutions: list[str] = typer.Option(None, help="Sizes to calibrate, WxH, comma-separated (default: 0.5x, 1x, 1.5x native; tiny models 32-96 px)."),
    batch_sizes: list[str] = typer.Option(None, "--batch-sizes", help="Batches to calibrate (default: 1 and 4; 1 and 2 for a full-size model on a CPU)."),
    isolate: bool = typer.Option(None, "--isolate/--no-isolate", help="Run each cell in a fresh process; default: on for a CPU, "
                                 "where peak memory is the process's resident set, a high-water mark an earlier cell would leave behind."),
    out: Path = typer.Option(None, "--out", help="Also write the fitted model (coefficients, residuals) as JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the workloads it would measure, measuring nothing."),
    *,
    overrides: dict[str, Any],
) -> None:
    """Measure the few points a cost model needs and store them; print the fitted model.

    Each cell is checked against the fit of the others; one that disagrees (a busy minute on one
    cell) is measured once more in fresh rounds and the measurement that agrees is kept (both are
    stored, and the cell's note says which). The host's load is recorded: a calibration measured
    while other processes took the cores is refused (exit 2) unless --force keeps it, loudly.

    Interrupted, it says which cells it kept and the `diffprof bench --resume` command that finishes
    them; `diffprof estimate --run RUN` then fits on that run.

    Then `diffprof estimate --model M --width W --height H --steps N --batch B` predicts any workload.
    Example: `diffprof calibrate --model sdxl --weights synthetic --device cuda --precision fp16`.
    """
    from diffprof.errors import ConfigError
    from diffprof.suites.checks import check_config, check_inputs

    # 1. Validate everything before importing torch or measuring anything.
    overrides |= {"suites": ["calibration"], "steps": steps, "report": None}
    if resolutions:
        overrides["resolutions"] = from_text(RunConfig.spec("resolutions"), resolutions)
    if batch_sizes:
        overrides["batch_sizes"] = from_text(RunConfig.spec("batch_sizes"), batch_sizes)
    overrides["isolate"] = isolate
    cfg = check_config(RunConfig.from_mapping(overrides))
    check_inputs(cfg)
    if isolate is None:  # on a CPU a cell's peak memory is the process's high-water mark: one process per cell
        import torch

        cfg.isolate = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    from diffprof.analysis.machine import machine_summary
    from diffprof.estimate.calibration import calibrations
    from diffprof.estimate.model import MIN_POINTS, CostModel, can_fit
    from diffprof.report.estimate_views import calibration_view
    from diffprof.store import Store
    from diffprof.suites.calibration import plan
    from diffprof.suites.recalibrate import calibrate as run_calibration

    from diffprof.estimate.architecture import Architecture

    Architecture.for_model(cfg.model)  # a model estimates cannot read is refused before any cell is measured
    points = plan(cfg)
    if not can_fit([w * h * b for w, h, b in points]):  # before measuring, not after
        raise ConfigError(f"this calibration would measure {len(points)} workload(s); a fit needs at least {MIN_POINTS} of different sizes or batches",
                          "give --resolutions with 3 or more sizes (e.g. 256x256,384x384,512x512), or more --batch-sizes, or drop both for the default plan")
    if out is not None and out.is_dir():  # before measuring: a path that cannot be written would lose the fit, not the cells
        raise ConfigError(f"--out {out} is a folder", "name a .json file, e.g. --out calib/fit.json")
    if dry_run:
        for w, h, b in points:
            console.print(f"calibration: {w}x{h}, batch {b}, {cfg.steps} steps", highlight=False)
        console.print(f"{len(points)} workloads of {cfg.model} ({'each in its own process' if cfg.isolate else 'in this process'}); "
                      "nothing measured (--dry-run)", highlight=False)
        return
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.db)
    command = "diffprof " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["calibrate"] else "diffprof calibrate"
    try:
        outcome = run_calibration(cfg, store, command=command, console=err_console, progress=progress)
        summary = outcome.summary
        err_console.print(f"calibration run {summary.run_id}: {summary.ok} cell(s) ok, {summary.failed} failed, {summary.seconds:.1f} s", highlight=False)
        found = calibrations(store, run=summary.run_id)
        machine = store.machine(summary.run_id)
    finally:
        store.close()  # frozen objects are not finalized at exit (engine.devices.clean): close, so the WAL is checkpointed
    if not found:
        raise ConfigError(f"calibration run {summary.run_id} measured nothing usable: every cell failed",
                          "see the errors above; `diffprof show` lists them")
    for retake in outcome.retakes:
        err_console.print(f"{'[green]' if retake.agrees else '[yellow]'}{retake.first.label}: {retake.note}[/]", highlight=False, soft_wrap=True)
    state = machine_summary(machine)
    if state:
        err_console.print(f"host: {state}", highlight=False)
    for key, cal in found.items():
        fitted = CostModel.fit(cal)
        console.print(calibration_view(fitted))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(fitted.summary(), indent=2, default=str))
            console.print(f"wrote the fitted model to {out}", highlight=False)
        console.print(f"next: diffprof estimate --model {shlex.quote(key.model)} --device {key.device} --precision {key.precision}"
                      + (f" --optimize {','.join(key.switches)}" if key.switches else "")
                      + (f" --db {shlex.quote(cfg.db)}" if cfg.db != RunConfig.default_of("db") else "")
                      + " --width W --height H --steps N --batch B", highlight=False)
    if outcome.load.busy:  # stored either way; used by estimate only when forced
        refuse_busy(outcome, cfg)
    if summary.failed:
        raise typer.Exit(CELLS_FAILED)


def refuse_busy(outcome: Any, cfg: RunConfig) -> None:
    """A calibration measured on a busy host: refused (exit 2, the hint names --force), or with
    ``--force`` kept, said loudly (and every estimate from it says so too)."""
    from diffprof.errors import ResourceError

    why = (f"the host was busy during calibration run {outcome.run_id}: {outcome.load.reason}; its times include that other work "
           "(a calibration measured beside another job has predicted held-out sizes 2-4x too slow)")
    if cfg.force:
        err_console.print(f"[bold yellow]warning: {why}. Kept because of --force: every estimate from run {outcome.run_id} says so.[/]",
                          highlight=False, soft_wrap=True)
        return
    raise ResourceError(f"{why}; estimate will not use it",
                        f"calibrate again when the host is quiet (see `uptime`), or pass --force to keep this one "
                        f"(or estimate from it anyway with --run {outcome.run_id})")


@app.command()
def estimate(
    model: str = typer.Option(RunConfig.default_of("model"), help=H("model")),
    width: int = typer.Option(None, help="Image width in pixels; default: the model's native size."),
    height: int = typer.Option(None, help="Image height in pixels; default: the model's native size."),
    steps: int = typer.Option(20, help=H("steps")),
    batch: int = typer.Option(1, help=H("batch")),
    guidance: float = typer.Option(None, help="Guidance scale (<= 1: no classifier-free guidance); default: as calibrated."),
    scheduler: str = typer.Option("default", help="Scheduler (see `diffprof schedulers`): sets how many denoiser calls the steps make "
                                  "(heun, dpm2, flow_heun: about 2 per step); default: the model's own."),
    task: str = typer.Option(None, help="txt2img, img2img or inpaint (adds the VAE encode of the init image; runs the last --strength of the "
                             "steps); default: txt2img, or inpaint for an inpainting model."),
    strength: float = typer.Option(None, help="img2img/inpaint strength in (0, 1]: the share of the steps that run (default 0.75, as generate)."),
    device: str = typer.Option(None, help="cpu or cuda; default: the device the store calibrates this model on."),
    precision: str = typer.Option(None, help="fp32, fp16 or bf16; default: the precision the store calibrates."),
    optimize: list[str] = typer.Option([], "--optimize", "-O", help="Optimization switches, as calibrated (default: none)."),
    derive: bool = typer.Option(False, "--derive", help="If --optimize was not calibrated, derive it from the calibration without "
                                "optimizations (activations traced, time per FLOP as calibrated); the output says which parts are modelled."),
    max_memory: float = typer.Option(None, "--max-memory", help="Memory budget in GiB (a '24 GB' GPU has 24 GiB): pick the fastest memory optimizations that fit."),
    headroom: float = typer.Option(0.0, help="GiB the budget must leave free (e.g. ~0.5-1 for the CUDA context, which peak allocated bytes do not count)."),
    run: str = typer.Option(None, help="Fit on this run's cells (id, latest, name) instead of the newest calibration."),
    db: str = db_option(),
    format: str = typer.Option("console", "--format", help="console or json."),
) -> None:
    """Predict time and peak memory of a generation from a calibration, with 95% intervals.

    Examples: `diffprof estimate --model sdxl --width 1536 --height 1536 --batch 4 --steps 30`;
    `diffprof estimate --model sdxl --width 1536 --height 1536 --batch 4 --max-memory 24`.
    """
    from diffprof.config.location import parse_location
    from diffprof.config.spec import check_value
    from diffprof.errors import ConfigError, StoreError

    # 1. Every option checked before anything heavy is imported (the same checks as config fields).
    if format not in ("console", "json"):
        raise ConfigError(f"unknown format {format!r}", "use console or json")
    for name, value in (("width", width), ("height", height), ("steps", steps), ("batch", batch), ("guidance", guidance)):
        check_value(ESTIMATE_SPECS.get(name) or RunConfig.spec(name), value)
    for spec, value in ((_MAX_MEMORY, max_memory), (_HEADROOM, headroom)):
        check_value(spec, value)
    if max_memory is not None and max_memory <= 0:
        raise ConfigError(f"--max-memory must be positive, got {max_memory}", "give the budget in GiB, e.g. --max-memory 24")
    from diffprof.engine.model_facts import check_request, model_facts

    check_request(model, model_facts(model), scheduler, task, strength)  # scheduler, task and strength before the store is read
    if run is None:  # a model that cannot load cannot be calibrated: name the typo, not a calibrate command that fails too
        from diffprof.models.presets import PRESETS
        from diffprof.models.resolve import looks_like_repo_id, resolve_source

        if not looks_like_repo_id(model):  # a Hub id is calibrated with --weights hub, which estimate does not take
            resolve_source(model, "synthetic" if model in PRESETS else "auto")  # any preset calibrates with synthetic weights
    from diffprof.estimate.architecture import Architecture

    Architecture.for_model(model)  # before the store: no calibration makes an estimate of a model it cannot read
    if parse_location(db).is_file and not Path(db).is_file():
        raise StoreError(f"results store {db} does not exist, so nothing is calibrated yet",
                         f"run: diffprof calibrate --model {shlex.quote(model)}" + (f" --db {shlex.quote(db)}" if db != RunConfig.default_of("db") else ""))
    switches = _split(optimize)
    from diffprof.estimate import Estimator
    from diffprof.report.estimate_views import budget_view, estimate_view
    from diffprof.store import Store

    target: list[str] | None = None
    with Store(db, create=False) as store:  # the estimator keeps what it read; the store is not needed after
        try:
            est = Estimator.from_store(store, model=model, device=device, precision=precision, optimize=switches, run=run)
        except StoreError:
            if not (derive and switches):
                raise
            est = Estimator.from_store(store, model=model, device=device, precision=precision, optimize=[], run=run)
            target = switches
    native = est.model.architecture.native_size
    w, h = width or native, height or native
    request = {"scheduler": scheduler, "task": task, "strength": strength}
    if max_memory is None:
        result = est.predict(w, h, steps, batch, guidance, optimize=target, **request)
        if format == "json":
            console.print_json(json.dumps(result.to_dict(), default=str))
        else:
            console.print(estimate_view(result))
        return
    answer = est.fit_budget(max_memory * GIB, w, h, steps, batch, guidance, headroom_bytes=headroom * GIB, **request)
    if format == "json":
        console.print_json(json.dumps(answer.to_dict(), default=str))
    else:
        console.print(budget_view(answer))
    # nothing fitting is an answer, not an error: exit 0 (1 means a regression to `compare`, 2 bad input);
    # the answer says so, and the JSON has "fits": false for scripts
