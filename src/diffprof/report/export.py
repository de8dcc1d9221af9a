"""Runs as flat tables for analysis outside diffprof (pandas, duckdb, polars, a spreadsheet):
``diffprof export RUN... --format csv|parquet --rows cell|sample|round``.

Every row starts with its run: ``run_id, run_uid, run_name, run_created_at, run_host_busy`` (the
uid keeps runs from several stores apart; ``run_host_busy`` is whether other processes took the
CPU the run needed, from its machine state, empty when none was recorded). ``--rows cell``: one
row per cell, the columns of :func:`~diffprof.analysis.frame.cell_records` (what the CSV report and
``Store.cells_frame`` give) for every run at once, then ``round_count`` and ``run_machine`` (the
run's whole machine state as JSON text). ``--rows sample``: one row per raw sample (a repeat's
``call_s``, a step's ``step_s``, ...): ``cell_id, suite, <labels>, status, sample, index, value``.
``--rows round``: one row per round of a metric measured in rounds (what ``compare`` weighs):
``cell_id, suite, <labels>, status, metric, round, value``. Both are tidy data: ``GROUP BY suite,
<labels>, sample`` (or ``metric``) gives any statistic. Values are SI units (seconds, bytes).

Parquet needs pyarrow (``pip install 'diffprof[parquet]'``); a column whose values mix types
across runs (a label that is a number in one run and text in another) is written as text, and
list or dict values as JSON text, so every column has one type.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from diffprof.analysis.frame import FIXED_COLUMNS, cell_records
from diffprof.analysis.machine import host_load
from diffprof.errors import ConfigError, DiffprofError, unknown_choice
from diffprof.metrics import ordered
from diffprof.results import RunInfo

ExportFormat = Literal["csv", "parquet"]
RowKind = Literal["cell", "sample", "round"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")
ROWS: tuple[RowKind, ...] = ("cell", "sample", "round")
RUN_COLUMNS = ("run_id", "run_uid", "run_name", "run_created_at", "run_host_busy")
SAMPLE_COLUMNS = ("cell_id", "suite", "status", "sample", "index", "value")
ROUND_COLUMNS = ("cell_id", "suite", "status", "metric", "round", "value")


def export_rows(runs: Sequence[RunInfo], rows: RowKind = "cell") -> tuple[list[str], list[dict[str, Any]]]:
    """The column names and records of ``runs`` as ``rows`` (see the module docstring)."""
    if rows not in ROWS:
        raise unknown_choice("export rows", rows, ROWS)
    if rows == "cell":
        return _cell_rows(runs)
    return _series_rows(runs, rows)


def _run_fields(run: RunInfo) -> dict[str, Any]:
    load = host_load(run.machine)
    busy = load.busy if load.recorded else None
    return {"run_id": run.id, "run_uid": run.uid, "run_name": run.name, "run_created_at": run.created_at, "run_host_busy": busy}


def _cell_rows(runs: Sequence[RunInfo]) -> tuple[list[str], list[dict[str, Any]]]:
    seen: dict[str, None] = {}
    records: list[dict[str, Any]] = []
    for run in runs:
        columns, cells = cell_records(run)
        seen.update(dict.fromkeys(columns))
        machine = json.dumps(run.machine, sort_keys=True) if run.machine else None
        records += [_run_fields(run) | record | {"round_count": cell.round_count, "run_machine": machine} for record, cell in zip(cells, run.cells)]
    metrics = ordered({m for run in runs for c in run.cells for m in c.metrics})
    labels = [c for c in seen if c not in FIXED_COLUMNS and c not in metrics]
    columns = [*RUN_COLUMNS, "cell_id", "suite", *labels, "status", *metrics, "s_per_image_iqr", "noisy", "error", "round_count", "run_machine"]
    return columns, records


def _series_rows(runs: Sequence[RunInfo], rows: RowKind) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per value of a cell's series: its raw samples (``sample``, indexed from 0) or its
    per-round metric values (``round``, numbered from 1 as the runner counts rounds)."""
    fixed = SAMPLE_COLUMNS if rows == "sample" else ROUND_COLUMNS
    name, position, start = ("sample", "index", 0) if rows == "sample" else ("metric", "round", 1)
    taken = set(RUN_COLUMNS) | set(fixed)
    label_cols: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    for run in runs:
        for cell in run.cells:
            for key in cell.labels:
                label_cols.setdefault(key, f"label_{key}" if key in taken else key)
            base = _run_fields(run) | {"cell_id": cell.id, "suite": cell.suite, "status": cell.status}
            base |= {label_cols[k]: v for k, v in cell.labels.items()}
            series = cell.samples if rows == "sample" else cell.rounds
            for series_name, values in series.items():
                records += [base | {name: series_name, position: i, "value": float(v)} for i, v in enumerate(values, start)]
    columns = [*RUN_COLUMNS, "cell_id", "suite", *label_cols.values(), "status", name, position, "value"]
    return columns, records


def write_export(runs: Sequence[RunInfo], path: str | Path, fmt: ExportFormat = "csv", rows: RowKind = "cell") -> int:
    """Write ``runs`` to ``path`` (``-``: standard output, csv only); returns the number of rows."""
    if fmt not in FORMATS:
        raise unknown_choice("export format", fmt, FORMATS)
    columns, records = export_rows(runs, rows)
    if fmt == "csv":
        text = csv_text(columns, records)
        if str(path) == "-":
            import sys

            sys.stdout.write(text)
        else:
            _target(path).write_text(text, encoding="utf-8")
        return len(records)
    if str(path) == "-":
        raise ConfigError("parquet is a binary file: it cannot go to standard output", "pass --out FILE.parquet")
    table = arrow_table(columns, records)
    import pyarrow.parquet as pq

    pq.write_table(table, str(_target(path)))
    return len(records)


def _target(path: str | Path) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder", "name a file, e.g. --out results.parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def csv_text(columns: list[str], records: list[dict[str, Any]]) -> str:
    """Records as CSV: an absent value is an empty field, floats are written to read back exactly."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_field(record.get(k)) for k in columns})
    return buf.getvalue()


def _csv_field(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def arrow_table(columns: list[str], records: list[dict[str, Any]]) -> Any:
    """A ``pyarrow.Table`` of the records, one type per column.

    Raises:
        DiffprofError: pyarrow is not installed.
    """
    try:
        import pyarrow as pa
    except ImportError as exc:
        raise DiffprofError("parquet export needs pyarrow, which is not installed", "pip install 'diffprof[parquet]' (or pip install pyarrow)") from exc
    data = {name: _uniform([r.get(name) for r in records]) for name in columns}
    return pa.table(data)


def _uniform(values: list[Any]) -> list[Any]:
    """One type for a column: JSON text for lists and dicts, floats for ints mixed with floats,
    text for anything else that mixes types."""
    values = [json.dumps(v) if isinstance(v, (list, dict)) else v for v in values]
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) <= 1:
        return values
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values]
    return [None if v is None else str(v) for v in values]
