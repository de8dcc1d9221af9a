"""Summary statistics that keep their raw samples.

Like ``torch.utils.benchmark.Measurement``: the samples are the truth, every statistic is derived
from them (numpy, linear interpolation), and a measurement whose spread is large relative to its
centre is flagged as noisy rather than silently trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: IQR / median above which a measurement is flagged as noisy (torch.utils.benchmark uses 10%).
NOISE_THRESHOLD = 0.10
#: Bounds of :attr:`SampleStats.significant_figures` (torch.utils.benchmark's 2 and 4).
MIN_FIGURES, MAX_FIGURES = 2, 4


@dataclass(frozen=True)
class SampleStats:
    """Statistics of one series of samples (any unit; the caller names it)."""

    samples: tuple[float, ...]
    unit: str = ""
    count: int = field(init=False)
    total: float = field(init=False)
    mean: float = field(init=False)
    median: float = field(init=False)
    p90: float = field(init=False)
    p99: float = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)
    iqr: float = field(init=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.samples, dtype=np.float64)
        object.__setattr__(self, "samples", tuple(float(v) for v in values))
        object.__setattr__(self, "count", int(values.size))
        if values.size == 0:
            for name in ("total", "mean", "median", "p90", "p99", "min", "max", "iqr"):
                object.__setattr__(self, name, float("nan"))
            object.__setattr__(self, "total", 0.0)
            return
        q25, q50, q75, q90, q99 = np.percentile(values, [25, 50, 75, 90, 99])
        object.__setattr__(self, "total", float(values.sum()))
        object.__setattr__(self, "mean", float(values.mean()))
        object.__setattr__(self, "median", float(q50))
        object.__setattr__(self, "p90", float(q90))
        object.__setattr__(self, "p99", float(q99))
        object.__setattr__(self, "min", float(values.min()))
        object.__setattr__(self, "max", float(values.max()))
        object.__setattr__(self, "iqr", float(q75 - q25))

    @classmethod
    def from_samples(cls, samples: Sequence[float], unit: str = "") -> SampleStats:
        return cls(tuple(samples), unit)

    @property
    def relative_iqr(self) -> float:
        """IQR / median: the spread as a fraction of the centre (nan when undefined)."""
        if self.count == 0 or self.median == 0:
            return float("nan")
        return self.iqr / abs(self.median)

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25)) if self.count else float("nan")

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75)) if self.count else float("nan")

    @property
    def significant_figures(self) -> int:
        """How many figures of the median the spread supports (2 to 4): ``floor(log10(median /
        ci))`` with ``ci`` = 1.645 x the standard deviation of the interquartile samples over the
        square root of their count, as ``torch.utils.benchmark.Measurement.significant_figures``
        estimates it. One or two samples say too little about their spread: 3, the default of tables."""
        if self.count < 3 or not np.isfinite(self.median) or self.median == 0:
            return 3
        ordered = np.sort(np.asarray(self.samples))
        middle = ordered[self.count // 4 : int(np.ceil(3 * self.count / 4))]
        ci = 1.645 * float(np.std(middle)) / np.sqrt(len(middle))
        if not ci > 0:
            return MAX_FIGURES
        figures = int(np.floor(np.log10(abs(self.median) / ci)))
        return min(max(figures, MIN_FIGURES), MAX_FIGURES)

    @property
    def noisy(self) -> bool:
        """True when IQR/median exceeds :data:`NOISE_THRESHOLD`; such numbers deserve more repeats."""
        rel = self.relative_iqr
        return bool(rel == rel and rel > NOISE_THRESHOLD)

    def scaled(self, factor: float, unit: str) -> SampleStats:
        """The same samples in another unit (e.g. ns -> ms with factor 1e-6)."""
        return SampleStats(tuple(v * factor for v in self.samples), unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "count": self.count,
            "total": self.total,
            "mean": self.mean,
            "median": self.median,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "iqr": self.iqr,
            "noisy": self.noisy,
            "samples": list(self.samples),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleStats:
        return cls(tuple(data["samples"]), data.get("unit", ""))
