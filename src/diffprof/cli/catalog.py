"""Listing commands: `diffprof models`, `schedulers`, `optimizations`, `suites` (and materialize)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from diffprof.cli.app import app, console

models_app = typer.Typer(help="List model presets, or write one to disk (`diffprof models materialize`).", invoke_without_command=True, no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(ctx: typer.Context) -> None:
    """List the model presets: name, family, native size, hub id, default weight source."""
    if ctx.invoked_subcommand is not None:
        return
    from diffprof.models.presets import DEFAULT_MODEL, PRESETS

    table = Table(title="model presets (`--model NAME`; a folder or .safetensors path also works)", title_justify="left")
    for col in ("name", "family", "native", "hub id", "weights", "description"):
        table.add_column(col, no_wrap=col == "name")
    for p in PRESETS.values():
        name = f"{p.name} (default)" if p.name == DEFAULT_MODEL else p.name
        table.add_row(name, p.family, f"{p.native_size}px", p.hub_id or "-", "builtin" if p.builtin else "hub | synthetic", p.description)
    console.print(table)


@models_app.command("materialize")
def materialize(
    model: str = typer.Argument(..., help="Preset name (see `diffprof models`)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (diffusers layout, safetensors)."),
    weights: str = typer.Option("auto", help="auto, hub, synthetic or builtin."),
    precision: str = typer.Option("fp32", help="fp32, fp16 or bf16 weights on disk."),
    seed: int = typer.Option(0, help="Seed for random (synthetic/builtin) weights."),
) -> None:
    """Write MODEL as a diffusers folder that plain `DiffusionPipeline.from_pretrained(DIR)` loads,
    so load time can be measured from a real disk (`diffprof generate --model DIR`)."""
    from diffprof.engine.precision import DTYPES, check_precision
    from diffprof.models.materialize import materialize as write

    path = write(model, out, weights=weights, dtype=DTYPES[check_precision(precision)], seed=seed)
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    console.print(f"wrote {model} ({weights}) to {path} ({size / 1e9:.2f} GB)", highlight=False)


@app.command()
def schedulers() -> None:
    """List scheduler short names for `--scheduler`, with what each one is."""
    from diffprof.engine.schedulers import SCHEDULERS

    table = Table(title="schedulers (`--scheduler NAME`; `default` keeps the model's own; a model takes only its own kind)", title_justify="left")
    for col in ("name", "kind", "diffusers class", "denoiser calls/step", "stochastic", "what it is"):
        table.add_column(col, no_wrap=col == "name")
    for s in SCHEDULERS.values():
        kind = "flow matching (SD3, FLUX, SANA)" if s.flow else "noise schedule (SD, SDXL, PixArt)"
        table.add_row(s.name, kind, s.class_name, str(s.evals_per_step), "yes" if s.stochastic else "", s.description)
    console.print(table)


@app.command()
def optimizations() -> None:
    """List optimization switches for `--optimize` / `-O`, with what each one does."""
    from diffprof.engine.switches import REGISTRY, fast_help

    table = Table(title="optimization switches (combine: -O vae_slicing,compile=unet+vae)", title_justify="left")
    table.add_column("switch", no_wrap=True)
    table.add_column("effect")
    for switch in REGISTRY:
        table.add_row(switch.listed_as or switch.name, switch.help)
    table.add_row("fast", fast_help())
    table.add_row("precision", "set with --precision fp32 | fp16 | bf16 | auto | half")
    console.print(table)


@app.command()
def suites() -> None:
    """List benchmark suites for `diffprof bench --suite`, and the groups (quick, all)."""
    from diffprof.suites import GROUPS, SUITES

    table = Table(title="suites (`diffprof bench --suite a,b`)", title_justify="left")
    for col in ("suite", "sweeps", "what it measures"):
        table.add_column(col, no_wrap=col == "suite")
    for s in SUITES.values():
        table.add_row(s.name, s.axis, s.description)
    for g, names in GROUPS.items():
        table.add_row(f"[bold]{g}[/]", "group", ", ".join(names))
    console.print(table)
