"""CSV: one row per operation record, labels as a JSON column, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields

from diffprof.profiler.exporters.base import Exporter, register
from diffprof.profiler.record import OperationRecord, Profile

COLUMNS = [f.name for f in fields(OperationRecord) if not f.name.startswith("_")]


@register
class CsvExporter(Exporter):
    name = "csv"
    file_extension = "csv"

    def render(self, profile: Profile) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for record in profile.records:
            row = record.to_dict()
            row["labels"] = json.dumps(row["labels"], default=str, sort_keys=True)
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
        return buf.getvalue()
