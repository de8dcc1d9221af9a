"""`diffprof tune`: the fastest config that holds quality, with the evidence, written as a config file.

Exit codes: 0 a config was written; 2 bad input, or no config meets the constraints (the message
names the closest achievable point; every candidate measured is still stored and printed).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from diffprof.cli.app import CONTINUE, app, console, err_console
from diffprof.cli.options import config_options
from diffprof.config import RunConfig, from_text, split_values
from diffprof.config.location import redact
from diffprof.config.spec import Spec, check_value
from diffprof.interrupts import Kept


#: tune's own numeric options, checked as schema fields are (finite, in range, one line when not).
_MIN_QUALITY = Spec("min_quality", "", "", type=float, default=0.9, optional=True, flag="--min-quality")
_TOLERANCE = Spec("tolerance", "", "", type=float, default=2.0, optional=True, minimum=0)
_MAX_MEMORY = Spec("max_memory", "", "", type=float, default=24.0, optional=True, minimum=0, flag="--max-memory", noun="--max-memory (GiB)")
_PROMPTS = Spec("prompts", "", "", type=int, default=8, minimum=1)
_MIN_PSNR = Spec("min_psnr", "", "", type=float, default=0.0, optional=True, minimum=0, maximum=200.0, flag="--min-psnr", noun="--min-psnr (dB)")
_MIN_GAIN = Spec("min_gain", "", "", type=float, default=0.05, minimum=0.001, maximum=0.99, flag="--min-gain", noun="--min-gain (a fraction)")


def _continue_tune(kept: Kept, args: list[str]) -> str:
    again = "diffprof " + shlex.join([a for a in args if a != "--debug"])
    return f"the candidates measured are stored in run {kept.run_id}; tune has no resume: rerun {again}"


CONTINUE["tune"] = _continue_tune


@app.command()
@config_options("tune", help_suffix={"prompt": "(convergence and clip score it).", "db": "Every candidate is stored as a run with suite `tune`."})
def tune(
    metric: str = typer.Option("auto", help="Quality to hold: adherence, convergence (PSNR vs a reference solve), clip, or a metric name (ssim, latent_rel_error); auto: adherence on shapes-sd, convergence otherwise."),
    min_quality: float = typer.Option(None, "--min-quality", help="Quality floor (adherence 0-1, PSNR dB, CLIP 0-100); default: the baseline's less --tolerance."),
    tolerance: float = typer.Option(None, help="Loss allowed against the baseline when --min-quality is not given; default 2 points (0.02 adherence, 2 dB, 2 CLIP)."),
    min_psnr: float = typer.Option(None, "--min-psnr", help="Fidelity floor: mean PSNR (dB) against the reference solve, held beside adherence or CLIP "
                                   "(which do not see speckle); default: 3 dB below the baseline's; 0: none. Tuning for convergence holds PSNR itself."),
    min_gain: float = typer.Option(0.05, "--min-gain", help="Gain over the baseline (and of a switch over the setting without it) that must be "
                                   "beyond the noise of rounds timed together, as compare judges; default 0.05 (5%)."),
    max_memory: float = typer.Option(None, "--max-memory", help="Peak memory cap in GiB (CUDA allocator peak on GPU, host RSS on CPU)."),
    config: Path = typer.Option(None, "--config", "-c", help="Base config (model, size, guidance, prompt, ...); flags override it."),
    precisions: list[str] = typer.Option(None, "--precisions", help="Precisions to search (default: fp32,bf16 on CPU; fp16,bf16 on CUDA)."),
    schedulers: list[str] = typer.Option(None, "--schedulers", help="Schedulers to search (default: dpmpp_2m, unipc, euler, ddim, pndm, dpmpp_2m_karras, deis)."),
    step_counts: list[str] = typer.Option(None, "--step-counts", help="Step counts to search (default: 6,8,10,12,15,20,25,30,50)."),
    optimizations: list[str] = typer.Option(None, "--optimizations", help="Optimization sets to search, + joins switches (default: none,channels_last on CPU; plus fuse_qkv and compile on CUDA)."),
    prompts: int = typer.Option(8, help="Prompts each confirmed candidate is scored on (held-out seeds); screens use a quarter."),
    out: Path = typer.Option(Path("diffprof-tuned.yaml"), "--out", "-o", help="Where to write the tuned config (.yaml or .json)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Print each candidate as it is measured."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate everything and print the search space, measuring nothing."),
    *,
    overrides: dict[str, Any],
) -> None:
    """Search scheduler x steps x precision x optimizations for the fastest config that holds quality.

    The baseline is the default diffusers setup (the model's scheduler, 50 steps, fp32 on CPU /
    fp16 on CUDA); by default quality may drop at most 2 points below it, and with adherence or
    CLIP, fidelity (PSNR against the reference solve) at most 3 dB. Before choosing, the fastest
    settings, the baseline and diffprof's default (20 steps) are timed together in --rounds rounds:
    a setting is chosen only when its gain is beyond --min-gain and the noise. Prints the evidence
    (every candidate, the Pareto front, the timing rounds, the choice and its speedups) and writes the config, which
    `diffprof generate --config FILE "prompt"` and `diffprof bench --config FILE` run. Example:
    `diffprof tune --model shapes-sd --device cpu --threads 1`.
    """
    # 1. Validate the whole request before importing or loading anything heavy.
    from diffprof.models.resolve import resolve_source
    from diffprof.suites.checks import check_config

    cfg = check_config(RunConfig.load(config, overrides) if config else RunConfig.from_mapping(overrides))
    steps = check_value(counts := RunConfig.spec("step_counts"), from_text(counts, step_counts or [])) or None  # as the steps suite takes them
    for spec, value in ((_MIN_QUALITY, min_quality), (_TOLERANCE, tolerance), (_MAX_MEMORY, max_memory), (_PROMPTS, prompts),
                        (_MIN_PSNR, min_psnr), (_MIN_GAIN, min_gain)):
        check_value(spec, value)
    check_value(RunConfig.spec("precisions"), split_values(precisions or []))  # names here; the device's own rules below
    check_config(RunConfig.from_mapping({"schedulers": split_values(schedulers or []), "memory_optimizations": split_values(optimizations or [])}))
    resolve_source(cfg.model, cfg.weights)
    import torch

    from diffprof.engine.engine import resolve_engine_device
    from diffprof.tune import NoConfigMeetsConstraints, SearchSpace, resolve_metric
    from diffprof.tune import tune as run_tune
    from diffprof.tune.result import fmt_quality
    from diffprof.units import fmt_seconds

    dev = resolve_engine_device(cfg.device)
    space = SearchSpace.for_device(
        dev, schedulers=split_values(schedulers or []) or None, steps=steps,
        precisions=split_values(precisions or []) or None, optimizations=split_values(optimizations or []) or None, model=cfg.model,
    )
    metric_name = resolve_metric(metric, cfg.model).name
    if dry_run:
        console.print(f"tune {cfg.model} on {dev} for {metric_name}: up to {space.size} settings, baseline {space.baseline.label}", highlight=False)
        for axis, values in (("schedulers", space.schedulers), ("step counts", space.steps), ("precisions", space.precisions),
                             ("optimizations", space.optimizations)):
            console.print(f"  {axis}: {', '.join(map(str, values))}", highlight=False)
        console.print("nothing measured (--dry-run)", highlight=False)
        return
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    def show(c: Any) -> None:
        quality = f"{fmt_quality(c.quality)} ({c.prompts} prompts)" if c.ok else "-"
        time = fmt_seconds(c.seconds_per_image) if c.ok else "-"
        err_console.print(f"  {c.stage:8} {c.setting.label}: {time}/image, {metric_name} {quality}: {c.verdict}", highlight=False)

    # 2. Search, printing candidates as they are measured.
    err_console.print(f"tuning {cfg.model} on {dev}: a search over up to {space.size} settings", highlight=False)
    try:
        result = run_tune(
            cfg, metric=metric, min_quality=min_quality, tolerance=tolerance, min_psnr=min_psnr, min_gain=min_gain, max_memory_gib=max_memory, prompts=prompts,
            space=space, store=cfg.db, output=out, command="diffprof " + shlex.join(sys.argv[1:]), on_candidate=show if progress else None,
        )
    except NoConfigMeetsConstraints as exc:
        console.print(exc.result.table())
        console.print(exc.result.summary(), highlight=False)
        raise
    # 3. The evidence, the rounds the choice was decided on, and the choice.
    console.print(result.table())
    decided = result.decision_table()
    if decided is not None:
        console.print(decided)
    console.print(result.summary(), highlight=False)
    console.print(f"tuned config: [bold]{result.config_path}[/] · candidates stored as run {result.run_id} in {redact(cfg.db)}", highlight=False)
