"""Pure functions over results: what the numbers say, apart from how they are drawn or stored.

Like pyinstrument's processors, everything here takes plain data (cells, runs, sample lists) and
returns plain data; nothing measures, reads a store or formats text. Reports, ``compare``,
``tune`` and ``estimate`` call the same functions, so a figure, a table and a verdict never
disagree about a fit, a front or a test.

- :mod:`~diffprof.analysis.cells`: one cell's time per image and its spread, throughput, memory
  figure, the noise flag.
- :mod:`~diffprof.analysis.fits`: power-law fits, the batch knee.
- :mod:`~diffprof.analysis.pareto`: Pareto fronts (time against quality or memory).
- :mod:`~diffprof.analysis.significance`: the test behind ``compare``.
- :mod:`~diffprof.analysis.compare`: two runs cell by cell, with verdicts.
- :mod:`~diffprof.analysis.frame`: a run as flat records and a pandas DataFrame.
"""

from diffprof.analysis.cells import images_per_call, is_noisy, seconds_per_image, throughput, time_stats
from diffprof.analysis.compare import CellComparison, Comparison, compare, match_cells
from diffprof.analysis.fits import KNEE_FRACTION, Knee, PowerLaw, find_knee, power_law_fit
from diffprof.analysis.frame import cell_records, cells_frame
from diffprof.analysis.pareto import TradeoffPoint, front_cells, pareto_front, quality_metric_of, tradeoff_points
from diffprof.analysis.significance import min_mannwhitney_p, significance

__all__ = [
    "KNEE_FRACTION",
    "CellComparison",
    "Comparison",
    "Knee",
    "PowerLaw",
    "TradeoffPoint",
    "cell_records",
    "cells_frame",
    "compare",
    "find_knee",
    "front_cells",
    "images_per_call",
    "is_noisy",
    "match_cells",
    "min_mannwhitney_p",
    "pareto_front",
    "power_law_fit",
    "quality_metric_of",
    "seconds_per_image",
    "significance",
    "throughput",
    "time_stats",
    "tradeoff_points",
]
