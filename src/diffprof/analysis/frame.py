"""A run as flat records, and as the one pandas DataFrame (``Store.cells_frame``, ``report.run_frame``).

One record per cell with raw values in SI units (seconds, bytes): ``run_id, cell_id, suite,
<labels>, status, <metrics>, s_per_image_iqr, noisy, error``. Labels become columns under their
own name; a label named like a metric or a fixed column is prefixed ``label_`` so no value hides
another. Metrics come in registry order, then unregistered ones by name. The CSV report writes
these records; pandas is optional and imported only by :func:`cells_frame`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diffprof.analysis.cells import time_stats
from diffprof.errors import DiffprofError
from diffprof.metrics import ordered
from diffprof.results import RunInfo

if TYPE_CHECKING:  # pragma: no cover
    import pandas

FIXED_COLUMNS = ("run_id", "cell_id", "suite", "status", "s_per_image_iqr", "noisy", "error")


def cell_records(run: RunInfo) -> tuple[list[str], list[dict[str, Any]]]:
    """The column names and one record per cell (``None`` where a cell lacks a value)."""
    metrics = ordered({m for c in run.cells for m in c.metrics})
    taken = set(FIXED_COLUMNS) | set(metrics)
    label_keys = list(dict.fromkeys(k for c in run.cells for k in c.labels))
    label_cols = {k: (f"label_{k}" if k in taken else k) for k in label_keys}
    columns = ["run_id", "cell_id", "suite", *label_cols.values(), "status", *metrics, "s_per_image_iqr", "noisy", "error"]
    records = []
    for cell in run.cells:
        s = time_stats(cell)
        record: dict[str, Any] = {"run_id": run.id, "cell_id": cell.id, "suite": cell.suite, "status": cell.status}
        record.update({col: cell.labels.get(k) for k, col in label_cols.items()})
        record.update({m: cell.metrics.get(m) for m in metrics})
        record["s_per_image_iqr"] = s.iqr if s is not None and s.count > 1 else None
        record["noisy"] = bool(s is not None and s.noisy)
        record["error"] = cell.error
        records.append(record)
    return columns, records


def cells_frame(run: RunInfo) -> pandas.DataFrame:
    """:func:`cell_records` as a DataFrame; a metric a cell lacks is NaN.

    Raises:
        DiffprofError: pandas is not installed.
    """
    try:
        import pandas
    except ImportError as exc:
        raise DiffprofError(
            "cells_frame needs pandas, which is not installed", "pip install 'diffprof[pandas]' (or pip install pandas)"
        ) from exc
    columns, records = cell_records(run)
    frame = pandas.DataFrame.from_records(records, columns=columns)
    metrics = [c for c in columns if c in {m for cell in run.cells for m in cell.metrics}]
    if metrics:  # None where a cell lacks a metric: NaN, and the column stays float
        frame[metrics] = frame[metrics].astype("float64")
    return frame
