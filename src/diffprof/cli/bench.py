"""`diffprof bench`, `runs`, `show`, `compare`, `report`: the main job and what follows it.

Exit codes: 0 all good; 1 `compare` found a significant regression; 2 bad input (nothing ran,
nothing stored was touched); 3 the run finished but some cells failed (they are stored with
their reasons).
"""

from __future__ import annotations

import shlex
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from diffprof.cli.app import CONTINUE, app, console, err_console
from diffprof.cli.options import config_options, flag_of
from diffprof.cli.stores import db_option, open_store
from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.interrupts import Kept

H = RunConfig.help_for
CELLS_FAILED = 3
#: Config keys that say where cells run, not what they measure: a resume may change them.
EXECUTION = ("executor", "workers", "ray_address")
#: Config keys that say where results go, how many threads measure and whether to override the
#: checks: a resume keeps what it is given.
RESUMABLE = ("db", "report", "threads", "trace", "force")


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
    resume: str = typer.Option(None, help="Resume run REF (id, latest, latest~1, name): skip its finished cells, rerun the rest with its stored config (only --db, --report, --threads, --force and the executor options may change). Refused while the process measuring it still runs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the config and list the cells it expands to (and what this device cannot run), measuring nothing; with --resume, the cells still to run."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    *,
    overrides: dict[str, Any],
) -> None:
    """Run benchmark suites, store every cell in the results store, and write a report.

    With no arguments: the `quick` group on the built-in model, results in ./diffprof.db (or the
    PostgreSQL store `--db postgresql://user@host/db` names) and an HTML report in
    ./diffprof-report.html. Examples: `diffprof bench -s schedulers,resolutions --model sd15
    --weights synthetic`; `diffprof bench --config seed.yaml`; `diffprof bench --dry-run -c seed.yaml`;
    `diffprof bench --resume latest`; `diffprof bench --executor local` (every GPU of this host);
    `diffprof bench --executor ray --ray-address auto` (a Ray cluster). Interrupted (Ctrl-C, SIGTERM),
    it says which cells it kept and the `--resume` command that finishes the run.
    """
    if no_report and "report" in overrides:
        raise ConfigError("--report names the report to write and --no-report writes none", "drop one of them")
    if no_report:
        overrides["report"] = None
    # 1. Validate the whole config before touching the store: the schema first (no torch needed), then
    #    the registry names (schedulers, switches, suites, executor) and the models.
    cfg = RunConfig.load(config, overrides) if config else RunConfig.from_mapping(overrides)
    from diffprof.suites.checks import check_config, check_inputs

    check_config(cfg)
    if resume is None:
        check_inputs(cfg)
    elif name is not None:
        raise ConfigError("--name labels a new run; a resumed run keeps its own name", "drop --name, or drop --resume")
    if dry_run and resume is None:
        return _dry_run(cfg)
    from diffprof.store import Store

    # closed on every exit, so the store is one self-contained file again (WAL checkpointed)
    with Store(cfg.db) as store:
        if resume is not None:
            cfg = _resumed_config(store, resume, config, overrides)
            if dry_run:
                return _dry_run(cfg, done=store.finished_keys(store.resolve(resume)))
            err_console.print(f"resuming run {store.resolve(resume)} with its stored config", highlight=False)
        # 2. Run.
        from diffprof.suites.runner import Runner

        command = "diffprof " + shlex.join(sys.argv[1:])
        runner = Runner(cfg, store, command=command, console=err_console, progress=progress, name=name)
        summary = runner.run(resume=resume)
        # 3. Report.
        from diffprof.report import ReportOptions
        from diffprof.report.console import console_renderables
        from diffprof.suites.runner import after_run

        with after_run(store, summary):
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


def _resumed_config(store: Any, resume: str, config: Path | None, overrides: dict[str, Any]) -> RunConfig:
    """The stored run's config, with what a resume may change (where results go, where cells run)."""
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
    base.setdefault("rounds", 1)  # a run stored before rounds measured each cell in one go
    return RunConfig.from_mapping(base | keep)


def _dry_run(cfg: RunConfig, done: set[str] | None = None) -> None:
    """List the cells (as ``pytest --collect-only`` lists tests): suite and labels, one a line, and
    what this device cannot run; measures nothing, stores nothing."""
    from diffprof.suites.base import expand
    from diffprof.suites.preflight import Preflight

    plan = Preflight.for_config(cfg)
    cells = expand(plan.config)
    todo = [c for c in cells if not done or c.key not in done]
    message = plan.message(todo, plan.refusals(todo, memory=False))
    for cell in cells:
        mark = "done " if done and cell.key in done else ""
        console.print(f"{mark}{cell.label}  [dim]{cell.key}[/]", highlight=False)
    if message:
        err_console.print(message, highlight=False, soft_wrap=True)
    where = f"executor {cfg.executor}" + (f", device {plan.device}" if plan.device is not None else "")
    left = f", {len(todo)} to run" if done else ""
    console.print(f"{len(cells)} cells{left} ({where}); nothing measured (--dry-run; each cell's peak memory is checked when the run starts)",
                  highlight=False)


def _continue_bench(kept: Kept, args: list[str]) -> str:
    if kept.finished:
        return f"its tables: diffprof show {kept.run_id} --db {shlex.quote(kept.db)} (a report: diffprof report {kept.run_id} --db {shlex.quote(kept.db)})"
    return f"resume: diffprof bench --resume {kept.run_id} --db {shlex.quote(kept.db)}"


CONTINUE["bench"] = _continue_bench


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
    alpha: float = typer.Option(0.05, help="Significance level, after the correction for the number of cells compared."),
    correction: str = typer.Option("bh", help="Multiple-comparison correction over the cells: bh (Benjamini-Hochberg), holm or none."),
    history: bool = typer.Option(True, "--history/--no-history", help="Use earlier runs of the same cells in the baseline's store as a noise floor."),
    speed_adjust: bool = typer.Option(
        True, "--speed-adjust/--no-speed-adjust",
        help="Divide each round's time by the speed probe timed beside it (runs of one environment only), so a machine that ran slower is not read as slower code.",
    ),
    format: str = typer.Option(
        "console", "--format", "-f", help="console, markdown, json, html, junit (JUnit XML: one test case per cell, a regression fails) "
        "or github (markdown for a GitHub Actions job summary)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the comparison to this file (html default: diffprof-compare-A-B.html; others: standard output)."),
    db: str = db_option(),
    baseline_db: str = typer.Option(
        None, "--baseline-db", help="Store of the baseline run A when it is not --db (e.g. the team's postgresql:// store, with B in "
        "this machine's diffprof.db); the noise floor comes from its earlier runs."),
) -> None:
    """Compare two runs cell by cell on their per-round values; exit code 1 only on a believed
    regression beyond the threshold or a newly failing cell (for CI), 2 on bad input.

    Cells whose noise is wider than the threshold are `too noisy` (with the rounds that would
    resolve them), and a regression measured while either run's host was busy is `host busy`:
    neither fails the gate. In CI: `diffprof compare main latest --baseline-db "$SHARED_DB" --format
    junit --out compare.xml` (docs/ci.md); `--format github >> "$GITHUB_STEP_SUMMARY"` puts the
    verdict table on the job's page.
    """
    from diffprof.errors import InputError
    from diffprof.report.comparison import get_comparison_renderer
    from diffprof.store.compare import compare_runs

    try:
        t = float(threshold.rstrip("%")) / (100 if threshold.endswith("%") else 1)
    except ValueError as exc:
        raise ConfigError(f"threshold {threshold!r} is not a number", "e.g. 5% or 0.05") from exc
    renderer = get_comparison_renderer(format)  # an unknown format fails before the store is read
    with open_store(db) as store, (open_store(baseline_db) if baseline_db is not None else nullcontext(None)) as baseline:
        result = compare_runs(
            store, run_a, run_b, threshold=t, metric=metric, alpha=alpha, correction=correction, history=history,  # type: ignore[arg-type]
            adjust_speed=speed_adjust, baseline=baseline,
        )
    if format == "console" and out is None:
        from diffprof.report.comparison.console import comparison_renderables

        console.print(comparison_renderables(result))
    else:
        if out is None and format == "html":
            out = Path(f"diffprof-compare-{result.run_a}-{result.run_b}.html")
        if out is None:
            sys.stdout.write(renderer.render(result))
            sys.stdout.flush()
            err_console.print(result.summary(), highlight=False)  # the job's log says it too, not only the file it feeds
        else:
            path = renderer.write(result, out)
            console.print(f"comparison: [bold]{path.resolve()}[/] · {result.summary()}", highlight=False)
    if not result.cells:
        raise InputError(
            f"runs {result.run_a} and {result.run_b} share no cell: nothing was compared",
            "compare runs of the same suites and settings (`diffprof show RUN` lists a run's cells)",
        )
    if result.has_regression:
        raise typer.Exit(1)


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
