"""`diffprof push`, `pull` and `export`: results beyond this machine.

`push RUN... --to URL` copies runs from ``--db`` into another store, `pull RUN... --from URL` the
other way (SQLite or PostgreSQL on either side), with their cells, samples and artifacts; a run
copied twice exists once (runs are matched by uid). `export RUN...` writes runs as CSV or Parquet
for pandas, duckdb and spreadsheets.
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffprof.cli.app import app, console
from diffprof.cli.stores import db_option, open_store

RUNS_HELP = "Runs to copy: ids, latest, latest~N or run names (each the newest run of that name)."


@app.command()
def push(
    runs: list[str] = typer.Argument(..., help=RUNS_HELP),
    to: str = typer.Option(..., "--to", help="Destination store: postgresql://user@host/db, or another SQLite file (created if missing)."),
    db: str = db_option("Source store (default: $DIFFPROF_DB, else diffprof.db)."),
) -> None:
    """Copy runs from --db into another store, e.g. the team's PostgreSQL store: `diffprof push latest --to
    postgresql://ci@db.internal/diffprof`. Pushing a run again adds only what is new (cells a resume finished)."""
    _copy(runs, source=db, dest=to)


@app.command()
def pull(
    runs: list[str] = typer.Argument(..., help=RUNS_HELP + " They are looked up in --from."),
    from_: str = typer.Option(..., "--from", help="Store to copy from, e.g. postgresql://user@host/db."),
    db: str = db_option("Destination store (default: $DIFFPROF_DB, else diffprof.db; created if missing)."),
) -> None:
    """Copy runs from another store into --db: `diffprof pull main --from postgresql://ci@db.internal/diffprof`
    brings the newest run named main here, to compare or report offline."""
    _copy(runs, source=from_, dest=db)


def _copy(refs: list[str], *, source: str, dest: str) -> None:
    # every reference is resolved before anything is copied: a typo copies nothing
    with open_store(source) as src:
        ids = list(dict.fromkeys(src.resolve(ref) for ref in refs))
        with open_store(dest, create=True) as dst:
            for rid in ids:
                done = src.copy_to(dst, rid)
                console.print(done.describe(src.path, dst.path), highlight=False, soft_wrap=True)


@app.command()
def export(
    runs: list[str] = typer.Argument(..., help="Runs to export: ids, latest, latest~N or run names."),
    format: str = typer.Option(None, "--format", "-f", help="csv or parquet (default: from --out's suffix, else csv)."),
    rows: str = typer.Option("cell", "--rows", help="cell (one row per cell: labels, status, metrics, the run's machine state), sample (one row per raw sample) or round (one row per round of a metric: what compare weighs)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default: diffprof-export.csv / .parquet; '-' writes csv to standard output)."),
    db: str = db_option(),
) -> None:
    """Write runs as a table for pandas, duckdb or a spreadsheet: `diffprof export latest~1 latest --format parquet
    --rows sample -o samples.parquet`, then `pandas.read_parquet("samples.parquet")` or
    `duckdb.sql("SELECT suite, sample, median(value) FROM 'samples.parquet' GROUP BY ALL")`."""
    from diffprof.errors import unknown_choice
    from diffprof.report.export import FORMATS, ROWS, write_export

    if format is None:
        format = "parquet" if out is not None and out.suffix == ".parquet" else "csv"
    if format not in FORMATS:
        raise unknown_choice("export format", format, FORMATS)
    if rows not in ROWS:
        raise unknown_choice("export rows", rows, ROWS)
    target = out or Path(f"diffprof-export.{format}")
    with open_store(db) as store:
        ids = list(dict.fromkeys(store.resolve(ref) for ref in runs))
        loaded = [store.get_run(rid) for rid in ids]
    count = write_export(loaded, target, format, rows)  # type: ignore[arg-type]
    if str(target) != "-":
        console.print(f"{count} {rows} rows of {len(loaded)} run(s) -> [bold]{target.resolve()}[/]", highlight=False, soft_wrap=True)
