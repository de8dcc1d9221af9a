"""A pandas DataFrame of a run, for analysis in a notebook: one row per cell.

pandas is optional (``pip install 'diffprof[pandas]'``) and imported only when asked for, so the
CLI and the other reports never pay its import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprof.errors import DiffprofError
from diffprof.report.tables import flat_records
from diffprof.results import RunInfo

if TYPE_CHECKING:
    import pandas


def run_frame(run: RunInfo) -> pandas.DataFrame:
    """Columns ``run_id, suite, <labels>, status, <metrics>, s_per_image_iqr, noisy, error``,
    raw values in SI units (seconds, bytes); a metric a cell lacks is NaN."""
    try:
        import pandas
    except ImportError as exc:
        raise DiffprofError(
            "run_frame needs pandas, which is not installed",
            "pip install 'diffprof[pandas]' (or pip install pandas)",
        ) from exc
    columns, records = flat_records(run)
    return pandas.DataFrame.from_records(records, columns=columns)
