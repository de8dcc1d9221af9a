"""A pandas DataFrame of a run, for analysis in a notebook: one row per cell.

:func:`run_frame` is :func:`diffprof.analysis.frame.cells_frame` (also ``Store.cells_frame``): one
frame, the columns the CSV report writes. pandas is optional (``pip install 'diffprof[pandas]'``)
and imported only when asked for, so the CLI and the other reports never pay its import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprof.analysis.frame import cells_frame
from diffprof.results import RunInfo

if TYPE_CHECKING:
    import pandas


def run_frame(run: RunInfo) -> pandas.DataFrame:
    """Columns ``run_id, cell_id, suite, <labels>, status, <metrics>, s_per_image_iqr, noisy,
    error``, raw values in SI units (seconds, bytes); a metric a cell lacks is NaN."""
    return cells_frame(run)
