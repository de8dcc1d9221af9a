"""`diffprof generate`: instrumented generation of one prompt or a whole prompts file.

Images are written as PNGs carrying their generation parameters (PNG text chunks ``parameters``
in the A1111 style and ``diffprof`` as JSON) plus a JSON sidecar with the per-component timing,
so every asset can be traced back to how it was made and what it cost.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from PIL import PngImagePlugin
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from diffprof.cli.app import app, console, err_console
from diffprof.cli.options import config_options
from diffprof.config import RunConfig, scalar_from_text
from diffprof.config.spec import check_value
from diffprof.errors import ConfigError, DiffprofError, InputError, closest
from diffprof.fileio import dumps_strict
from diffprof.results import FAST_PATH_NOTE, NOTE_KEYS, TIMING_NOTE
from diffprof.units import fmt_bytes, fmt_seconds


#: How generate introduces each note it prints.
NOTE_PREFIX = {
    FAST_PATH_NOTE: "the denoising loop did not run as the optimizations asked: ",
    TIMING_NOTE: "these times are not a fresh process's: ",
}

#: Config fields a prompts-file row may override (their types and checks come from the schema).
ROW_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "width", "height", "batch", "task", "strength", "image", "mask")


@dataclass
class Job:
    row: int
    overrides: dict[str, Any]


def read_prompts(path: Path) -> list[Job]:
    """txt: one prompt per line; jsonl / csv: one row per job with per-row overrides."""
    if not path.is_file():
        raise InputError(f"prompts file {str(path)!r} does not exist", "give a .txt, .jsonl or .csv file")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".txt":
        rows = [{"prompt": line.strip()} for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    elif path.suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name} line {n} is not JSON: {exc.msg}", "one JSON object per line") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path.name} line {n} is not a JSON object", 'e.g. {"prompt": "a red circle", "seed": 3}')
            rows.append(row)
    elif path.suffix == ".csv":
        with path.open(newline="") as fh:
            rows = [{k: v for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(fh)]
    else:
        raise InputError(f"prompts file {path.name!r} has an unknown extension", "use .txt (one prompt per line), .jsonl or .csv")
    jobs = []
    for n, row in enumerate(rows, 1):
        overrides: dict[str, Any] = {}
        for key, value in row.items():
            if key not in ROW_KEYS:
                guess = closest(key, ROW_KEYS)
                raise InputError(f"{path.name} row {n}: unknown column {key!r}", (f"did you mean {guess!r}? " if guess else "") + f"columns: {', '.join(ROW_KEYS)}")
            spec = RunConfig.spec(key)
            try:  # a CSV cell is text; a JSON value already has its type
                overrides[key] = check_value(spec, scalar_from_text(spec, value) if isinstance(value, str) else value)
            except ConfigError as exc:
                raise InputError(f"{path.name} row {n}: {exc.message}", exc.hint) from exc
        if "prompt" not in overrides:
            raise InputError(f"{path.name} row {n} has no prompt", "every row needs a prompt")
        jobs.append(Job(n, overrides))
    if not jobs:
        raise InputError(f"prompts file {path.name!r} holds no prompts", "one prompt per line (.txt), or one row per job (.jsonl, .csv)")
    return jobs


def png_info(settings: dict[str, Any], prompt: str, negative: str | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    a1111 = (
        f"{prompt}\n" + (f"Negative prompt: {negative}\n" if negative else "")
        + f"Steps: {settings['steps']}, Sampler: {settings['scheduler']}, CFG scale: {settings['guidance']}, "
        f"Seed: {settings['seed']}, Size: {settings['width']}x{settings['height']}, Model: {settings['model']}"
    )
    info.add_text("parameters", a1111)
    info.add_text("diffprof", dumps_strict(dict(settings, prompt=prompt, negative_prompt=negative)))
    return info


@app.command()
@config_options("generate")
def generate(
    prompt: str = typer.Argument(None, help="Prompt (or use --prompts FILE)."),
    config: Path = typer.Option(None, "--config", "-c", help="Config file (e.g. from `diffprof tune`): model, scheduler, steps, precision, optimizations...; flags given override it."),
    prompts: Path = typer.Option(None, "--prompts", help="Prompts file: .txt one per line, or .jsonl/.csv with per-row overrides (seed, steps, scheduler, ...)."),
    out: Path = typer.Option(Path("diffprof-images"), "--out", help="Folder for PNGs and their JSON sidecars; files already there are kept (a name taken by an earlier run gets -2, -3, ...)."),
    profile_out: Path = typer.Option(None, "--profile-out", help="Folder for profile.json and a Chrome trace (open in ui.perfetto.dev)."),
    warmup: int = typer.Option(0, min=0, help="Unrecorded calls before the first job (compile, cuDNN autotune and lazy init stay out of the timings)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the prompt(s) and settings and list the jobs, generating nothing."),
    *,
    overrides: dict[str, Any],
) -> None:
    """Generate images with per-component timing.

    Examples: `diffprof generate "a red circle"`; `diffprof generate "a castle" --model sd15 --weights synthetic
    --steps 50 --precision fp16`; `diffprof generate --prompts assets.jsonl --out assets/`.
    """
    # 1. Validate everything before loading anything.
    if prompt is None and prompts is None and config is None:
        raise InputError("give a PROMPT or --prompts FILE", 'e.g. diffprof generate "a large red circle in the center on a blue background"')
    jobs = read_prompts(prompts) if prompts else [Job(1, {"prompt": prompt} if prompt is not None else {})]
    if prompt is not None and prompts is not None:  # after reading: a bad file is named first
        raise InputError("give a PROMPT or --prompts FILE, not both", "put the prompt into the file as one more line, or drop --prompts")
    # a config file is the base; only the flags given on the command line override it
    base = RunConfig.load(config, overrides) if config is not None else RunConfig.from_mapping(overrides)
    job_configs = [RunConfig.from_mapping(job.overrides, base=base) for job in jobs]
    from diffprof.suites.checks import check_config

    for c in job_configs:  # registry names (a row may name its own scheduler)
        check_config(c)
    if any(c.task == "txt2img" and (c.image or c.mask) for c in job_configs):
        raise InputError("--image and --mask are for img2img and inpainting; text-to-image would ignore them",
                         "add --task img2img (with --image) or --task inpaint (with --image and --mask), or drop them")
    from diffprof.models.resolve import resolve_source

    resolve_source(base.model, base.weights)  # a model typo: one line, before torch loads
    if dry_run:
        for job, c in zip(jobs, job_configs):
            console.print(f"row {job.row}: {c.task} {c.prompt!r} · {c.scheduler}, {c.steps} steps, guidance {c.guidance:g}, "
                          f"batch {c.batch}, seed {c.seed}, size {c.width or 'native'}x{c.height or 'native'}", highlight=False)
        console.print(f"{len(jobs)} job(s) on {base.model}; nothing generated (--dry-run)", highlight=False)
        return
    import torch

    from diffprof.engine import Engine
    from diffprof.profiler import Profiler, get_exporter

    if base.threads:
        torch.set_num_threads(base.threads)
    # 2. Check the device and that the largest call fits it, then load once.
    from diffprof.engine.engine import resolve_engine_device
    from diffprof.estimate.memory_check import check_fits

    resolved = resolve_engine_device(base.device)  # a device that is not there: a clean error, before anything loads
    for c in {(c.width, c.height, c.batch, c.guidance): c for c in job_configs}.values():  # each distinct call shape once
        check_fits(c, resolved, what=f"{c.model} at {c.width or 'native'}x{c.height or 'native'}")
    profiler = Profiler(base.profile_level, device=resolved, trace_dir=(profile_out / "kernels") if profile_out else None)
    engine = Engine.load(base.model, base.weights, device=resolved, precision=base.precision, optimize=list(base.optimize), profiler=profiler,
                         seed=base.seed, allow_pickle=base.allow_pickle)
    console.print(f"loaded [bold]{base.model}[/] ({engine.load_info.source}) on {engine.device} in {fmt_seconds(engine.load_info.seconds)}", highlight=False)
    # 3. Warm up (not recorded) on the first job's request, then generate, writing each image as soon as it exists.
    for _ in range(warmup):
        engine.generate(job_configs[0].to_request())
    if warmup:
        profiler.reset()
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    fallbacks: dict[str, None] = {}  # why the loop did not run as the optimizations asked, once each
    written: list[Path] = []
    failures = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=len(job_configs) < 2) as progress:
        bar = progress.add_task("generating", total=len(job_configs))
        for job, c in zip(jobs, job_configs):
            try:
                result = engine.generate(c.to_request())
            except DiffprofError:
                raise
            except Exception as exc:  # noqa: BLE001 - out of memory, a scheduler refusing the step count: this row fails, the rest run
                failures += 1
                from diffprof.suites.worker import error_text  # the type says whose error it is, as a bench cell's does

                err_console.print(f"[red]row {job.row} failed:[/] {error_text(exc)}", highlight=False)
                progress.advance(bar)
                continue
            timings.append(result.timing)
            for key in NOTE_KEYS:  # every per-call note, once each (a detailed-level timing, a loop fallback, ...)
                if result.settings.get(key):
                    fallbacks.setdefault(f"{NOTE_PREFIX.get(key, '')}{result.settings[key]}", None)
            for k, img in enumerate(result.images):
                stem = free_stem(out, f"{job.row:04d}-{k:02d}-seed{c.seed}")
                path = out / f"{stem}.png"
                img.save(path, pnginfo=png_info(result.settings, c.prompt, c.negative_prompt))
                sidecar = dict(result.settings, prompt=c.prompt, negative_prompt=c.negative_prompt, image_index=k, timing=result.timing.to_dict())
                sidecar["timing"].pop("timeline", None)
                (out / f"{stem}.json").write_text(dumps_strict(sidecar, indent=1))  # strict JSON: no NaN for a parser to refuse
                written.append(path)
            progress.advance(bar)
    # 4. Summarize.
    if timings:
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        rows = [
            ("text encoding", fmt_seconds(med([t.text_encode_s for t in timings]))),
            ("denoising step (median)", fmt_seconds(med([t.step_median_s for t in timings]))),
            ("denoising loop", fmt_seconds(med([t.denoise_s for t in timings])) + f"  ({med([t.steps_per_s for t in timings]):.2f} steps/s)"),
            ("VAE decode", fmt_seconds(med([t.vae_decode_s for t in timings]))),
            ("whole call", fmt_seconds(med([t.total_s for t in timings]))),
            ("per image", fmt_seconds(med([t.s_per_image for t in timings])) + f"  ({1 / med([t.s_per_image for t in timings]):.2f} images/s)"),
        ]
        if any(t.vae_encode_s for t in timings):
            rows.insert(1, ("VAE encode", fmt_seconds(med([t.vae_encode_s for t in timings]))))
        encoders = list(dict.fromkeys(c for t in timings for c in t.text_encode_by))
        if len(encoders) > 1:  # SD3's CLIP-L, CLIP-G and T5; FLUX's CLIP-L and T5: each one's share
            spec = engine.anatomy.spec
            kinds = {t.component: f" ({t.kind})" for t in spec.text_encoders} if spec is not None else {}
            rows[1:1] = [(f"  {c}{kinds.get(c, '')}", fmt_seconds(med([t.text_encode_by.get(c, 0.0) for t in timings]))) for c in encoders]
        peaks = [t.peak_allocated for t in timings if t.peak_allocated is not None]
        if peaks:
            rows.append(("peak GPU memory (allocated)", fmt_bytes(max(peaks))))
        from diffprof.report.console_tables import timing_table

        console.print(timing_table(rows, engine.load_info))
    for note in fallbacks:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote {len(written)} image(s) with JSON sidecars to {out}/", highlight=False)
    if profile_out:
        profile_out.mkdir(parents=True, exist_ok=True)
        profile = profiler.profile()
        get_exporter("json").write(profile, profile_out / "profile.json")
        get_exporter("chrome").write(profile, profile_out / "profile.trace.json")
        console.print(f"profile: {profile_out / 'profile.json'}, trace: {profile_out / 'profile.trace.json'}", highlight=False)
    if failures:
        raise typer.Exit(3)


def free_stem(folder: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... when an earlier run already wrote that image or its
    sidecar: a second ``generate`` into the same folder keeps the first one's files."""
    candidate, n = stem, 1
    while (folder / f"{candidate}.png").exists() or (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{stem}-{n}"
    return candidate
