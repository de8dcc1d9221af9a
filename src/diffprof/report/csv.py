"""CSV: one row per cell with raw values in SI units (seconds, bytes), for spreadsheets.

Columns are :func:`~diffprof.analysis.frame.cell_records` (the same as the pandas frame):
``run_id, cell_id, suite, <labels>, status, <metrics>, s_per_image_iqr, noisy, error``; an absent
value is an empty field.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from diffprof.analysis.frame import cell_records
from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.results import RunInfo


def _field(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return value


@register
class CsvRenderer(Renderer):
    name = "csv"
    file_extension = "csv"

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str:
        columns, records = cell_records(run)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: _field(record[k]) for k in columns})
        return buf.getvalue()
