"""`diffprof bench`, `runs`, `show`, `compare`, `report`: the main job and what follows it.

Exit codes: 0 all good; 1 `compare` found a significant regression; 2 bad input (nothing ran,
nothing stored was touched); 3 the run finished but some cells failed (they are stored with
their reasons).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from diffprof.cli.app import app, console, err_console
from diffprof.cli.options import config_options, flag_of
from diffprof.cli.stores import db_option, open_store
from diffprof.config import RunConfig
from diffprof.errors import ConfigError

H = RunConfig.help_for
CELLS_FAILED = 3
#: Config keys that say where cells run, not what they measure: a resume may change them.
EXECUTION = ("executor", "workers", "ray_address")
#: Config keys that say where results go and how many threads measure: a resume keeps what it is given.
RESUMABLE = ("db", "report", "threads", "trace")


def write_report(store: Any, run_id: int, path: str, fmt: str | None = None) -> Path:
    from diffprof.report import ReportOptions, get_renderer

    out = Path(path)
    fmt = fmt or {".html": "html", ".htm": "html", ".md": "markdown", ".csv": "csv", ".json": "json", ".txt": "console"}.get(out.suffix, "html")
    renderer = get_renderer(fmt)
    run = store.get_run(run_id, artifacts=True)
    content = renderer.render(run, ReportOptions())
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        out.write_bytes(content)
    else:
        out.write_text(content, encoding="utf-8")
    return out


@app.command()
@config_options("bench")
def bench(
    config: Path = typer.Option(None, "--config", "-c", help="YAML/TOML/JSON config (diffprof or SEOConfig keys); flags override it."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write a report."),
    name: str = typer.Option(None, help="Name the run, so `compare baseline latest` works."),
    resume: str = typer.Option(None, help="Resume run REF (id, latest, latest~1, name): skip its finished cells, rerun the rest with its stored config (only --db, --report, --threads and the executor options may change)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    *,
    overrides: dict[str, Any],
) -> None:
    """Run benchmark suites, store every cell in the results store, and write a report.

    With no arguments: the `quick` group on the built-in model, results in ./diffprof.db (or the
    PostgreSQL store `--db postgresql://user@host/db` names) and an HTML report in ./diffprof-report.html. Examples: `diffprof bench -s schedulers,resolutions --model sd15
    --weights synthetic`; `diffprof bench --config seed.yaml`; `diffprof bench --resume latest`;
    `diffprof bench --executor local` (every GPU of this host); `diffprof bench --executor ray
    --ray-address auto` (a Ray cluster).
    """
    if no_report and "report" in overrides:
        raise ConfigError("--report names the report to write and --no-report writes none", "drop one of them")
    if no_report:
        overrides["report"] = None
    # 1. Validate the whole config before touching the store: the schema first (no torch needed), then
    #    the registry names (schedulers, switches, suites, executor).
    cfg = RunConfig.load(config, overrides) if config else RunConfig.from_mapping(overrides)
    from diffprof.suites.checks import check_config

    check_config(cfg)
    from diffprof.store import Store
    from diffprof.suites.runner import Runner

    # closed on every exit, so the store is one self-contained file again (WAL checkpointed)
    with Store(cfg.db) as store:
        if resume is not None:
            if name is not None:
                raise ConfigError("--name labels a new run; a resumed run keeps its own name", "drop --name, or drop --resume")
            measuring = sorted(k for k in overrides if k not in (*RESUMABLE, *EXECUTION))
            if measuring or config:
                given = ", ".join(flag_of(k) for k in measuring) or f"--config {config}"
                raise ConfigError(
                    f"--resume reruns a stored run's cells with its stored config; {given} would change what it measures",
                    "drop those options to finish the run as it was, or start a new run without --resume",
                )
            stored = store.get_run(resume)
            keep = {k: v for k, v in overrides.items() if k in RESUMABLE}
            base = dict(stored.config)
            if any(k in overrides for k in EXECUTION):  # where to run is this command's choice, as a whole
                base = {k: v for k, v in base.items() if k not in EXECUTION}
                keep |= {k: v for k, v in overrides.items() if k in EXECUTION}
            cfg = RunConfig.from_mapping(base | keep)
            err_console.print(f"resuming run {stored.id} with its stored config", highlight=False)
        # 2. Run.
        command = "diffprof " + shlex.join(sys.argv[1:])
        runner = Runner(cfg, store, command=command, console=err_console, progress=progress, name=name)
        summary = runner.run(resume=resume)
        # 3. Report.
        from diffprof.report import ReportOptions
        from diffprof.report.console import console_renderables

        run = store.get_run(summary.run_id)
        console.print(console_renderables(run, ReportOptions(compact=True)))
        done = f"run {summary.run_id}: {summary.ok} ok, {summary.failed} failed"
        if summary.skipped:
            done += f", {summary.skipped} already done"
        console.print(f"{done} in {summary.seconds:.1f} s · store {store.path}", highlight=False)
        if cfg.report:
            path = write_report(store, summary.run_id, cfg.report)
            console.print(f"report: [bold]{path.resolve()}[/]", highlight=False)
        if summary.failed:
            raise typer.Exit(CELLS_FAILED)


@app.command()
def runs(
    db: str = db_option(),
    limit: int = typer.Option(20, help="How many runs, newest first."),
) -> None:
    """List stored runs, newest first, with their cell counts and status."""
    from diffprof.report.console_tables import runs_table

    with open_store(db) as store:
        console.print(runs_table(store.list_runs(limit)))


@app.command()
def show(
    run: str = typer.Argument("latest", help="Run id, latest, latest~N or a run name."),
    db: str = db_option(),
    full: bool = typer.Option(False, "--full", help="Every metric (wide); by default the key ones: time, throughput, components, memory, MFU, quality."),
) -> None:
    """Show one run's cells with their metrics (failed cells with their reasons)."""
    from diffprof.environment import describe_environment
    from diffprof.report.console_tables import cells_table

    with open_store(db) as store:
        info = store.get_run(run)
    console.print(f"run {info.id} · {info.status} · {info.created_at} · {info.command}", highlight=False)
    console.print(describe_environment(info.environment), highlight=False)
    table = cells_table(info, compact=not full)
    if full:  # as wide as it needs (a pager or a wide window shows it), not squeezed into "..."
        from rich.console import Console
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options.update(max_width=100_000), table).maximum
        Console(width=max(console.width, needed), color_system=console.color_system and "auto").print(table)
    else:
        console.print(table)


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="Baseline run (id, latest~1, name)."),
    run_b: str = typer.Argument("latest", help="Candidate run."),
    threshold: str = typer.Option("5%", help="Smallest change that counts, e.g. 5% or 0.05."),
    metric: str = typer.Option("s_per_image", help="Metric to compare (lower is better for times, higher for images_per_s)."),
    alpha: float = typer.Option(0.05, help="Significance level of the test on raw samples."),
    db: str = db_option(),
    baseline_db: str = typer.Option(
        None, "--baseline-db", help="Store of the baseline run A, when it is not --db: e.g. the team's postgresql:// store, "
        "with B in this machine's diffprof.db."),
    format: str = typer.Option(
        "console", "--format", "-f", help="console (a table), junit (JUnit XML: one test case per cell, a regression fails) "
        "or github (markdown for a GitHub Actions job summary)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the junit or github output to this file (default: standard output)."),
) -> None:
    """Compare two runs cell by cell; exit code 1 on a significant regression beyond the threshold (for CI).

    In CI: `diffprof compare main latest --baseline-db "$SHARED_DB" --format junit --out compare.xml`
    (see docs/ci.md); `--format github >> "$GITHUB_STEP_SUMMARY"` puts the verdict table on the job's page.
    """
    from diffprof.analysis.compare import compare as compare_pair
    from diffprof.errors import ConfigError, InputError

    try:
        t = float(threshold.rstrip("%")) / (100 if threshold.endswith("%") else 1)
    except ValueError as exc:
        raise ConfigError(f"threshold {threshold!r} is not a number", "e.g. 5% or 0.05") from exc
    renderer = None
    if format != "console":
        from diffprof.report.comparison import get_comparison_renderer

        renderer = get_comparison_renderer(format)
    elif out is not None:
        raise ConfigError("--out writes the junit or github output; the console table is printed", "add --format junit or --format github, or drop --out")
    with open_store(baseline_db or db) as store:
        a = store.get_run(run_a)
        if baseline_db is None:
            b = store.get_run(run_b)
    if baseline_db is not None:
        with open_store(db) as store:
            b = store.get_run(run_b)
    result = compare_pair(a, b, threshold=t, metric=metric, alpha=alpha)
    if renderer is None:
        from diffprof.report.console_tables import comparison_table

        console.print(comparison_table(result))
        console.print(result.summary(), highlight=False)
    else:
        from diffprof.report.comparison import ComparisonOptions

        text = renderer.render(result, ComparisonOptions(label_a=_run_label(a), label_b=_run_label(b)))
        if out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        err_console.print(f"{result.summary()}" + (f" · {format}: {out}" if out else ""), highlight=False)
    if not result.cells:
        raise InputError(
            f"runs {result.run_a} and {result.run_b} share no cell: nothing was compared",
            "compare runs of the same suites and settings (`diffprof show RUN` lists a run's cells)",
        )
    if result.has_regression:
        raise typer.Exit(1)


def _run_label(run: Any) -> str:
    """``main (run 12)``, or ``run 12`` for a run without a name."""
    return f"{run.name} (run {run.id})" if run.name else f"run {run.id}"


@app.command("report")
def report_cmd(
    run: str = typer.Argument("latest", help="Run id, latest, latest~N or a run name."),
    format: str = typer.Option(None, "--format", "-f", help="console, markdown (or md), csv, json or html (default html)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default: diffprof-report-RUN.EXT; console prints)."),
    into: Path = typer.Option(
        None, "--into", help="Markdown page to update in place: the run's tables replace the part between the "
        "HTML comments 'diffprof:begin KEY' and 'diffprof:end KEY' (added at the end if absent); the rest stays."),
    section: str = typer.Option(None, "--section", help="KEY of the --into section (default: the run's name, else run-ID)."),
    db: str = db_option(),
    full: bool = typer.Option(False, "--full", help="Console: every metric and the whole environment, not just the key ones."),
) -> None:
    """Render a stored run as a report (html: one self-contained file with plots and images).

    Keep a hand-written benchmarks page current: `diffprof report sdxl-memory --into docs/benchmarks.md
    --section memory-sdxl` writes the run's tables under a line naming its command, date and machine.
    """
    from diffprof.report import ReportOptions, get_renderer

    if into is not None:
        if format not in (None, "markdown", "md") or out is not None:
            raise ConfigError("--into writes a markdown section in place", "drop --format/--out, or drop --into")
        from diffprof.report.markdown import render_markdown_section
        from diffprof.report.sections import write_section

        with open_store(db) as store:
            info = store.get_run(store.resolve(run), artifacts=False)
        key = section or info.name or f"run-{info.id}"
        write_section(into, key, render_markdown_section(info))
        console.print(f"section [bold]{key}[/] of {into.resolve()}: run #{info.id}", highlight=False)
        return
    if section is not None:
        raise ConfigError("--section names a part of the --into page", "add --into PAGE.md, or drop --section")
    format = format or "html"
    renderer = get_renderer(format)
    with open_store(db) as store:
        rid = store.resolve(run)
        if format == "console" and out is None:
            from diffprof.report.console import console_renderables

            console.print(console_renderables(store.get_run(rid, artifacts=False), ReportOptions(compact=not full)))
            return
        path = write_report(store, rid, str(out or f"diffprof-report-{rid}.{renderer.file_extension}"), format)
    console.print(f"report: [bold]{path.resolve()}[/]", highlight=False)
