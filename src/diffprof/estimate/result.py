"""What an estimate says: plain data with JSON round-trip; renderers format it, never compute it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from diffprof.estimate.workload import Workload

#: Where a number comes from: fitted on this optimization set's own measurements, or derived.
MEASURED = "measured"


@dataclass(frozen=True)
class Interval:
    """A prediction interval: a new measurement falls inside with probability ``level``."""

    low: float
    high: float
    level: float = 0.95

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Component:
    """One part of the predicted time.

    Attributes:
        name: ``load``, ``text_encode``, ``vae_encode``, ``denoise``, ``vae_decode``, ``other`` or ``offload_transfer``.
        seconds: predicted time.
        interval: its prediction interval (``None`` where none is known).
        source: ``measured`` (fitted on this optimization set's calibration) or ``modelled: <rule>``.
        detail: how it is made up (``21 denoiser calls x 7.5 ms``).
    """

    name: str
    seconds: float
    interval: Interval | None
    source: str = MEASURED
    detail: str = ""


@dataclass(frozen=True)
class MemoryPart:
    """One part of the predicted peak: ``weights`` (resident at the peak), ``activations``, ``baseline``."""

    name: str
    bytes: float
    source: str = MEASURED
    detail: str = ""


@dataclass(frozen=True)
class Basis:
    """The measurements an estimate rests on."""

    run_id: int
    created_at: str
    environment: str
    cell_ids: tuple[int, ...]
    points: tuple[str, ...]
    optimizations: str
    failed: tuple[str, ...] = ()


@dataclass
class Estimate:
    """Predicted time and peak memory of one call.

    Attributes:
        time_s: load + one call (what the first batch of images costs from a cold start).
        interval: prediction interval of ``time_s``.
        call_s: one call on a loaded pipeline (what each further batch costs).
        call_interval: prediction interval of ``call_s``.
        components: the parts of ``time_s``.
        peak_bytes: predicted peak memory: PyTorch's peak allocated bytes on CUDA; on CPU the
            process's peak resident set (runtime + weights + activations), as ``memory_metric`` says.
        peak_interval: prediction interval of ``peak_bytes``.
        memory_parts: weights, activations and baseline making up ``peak_bytes``.
        peak_phase: the phase where memory peaks (``text``, ``unet`` or ``vae``).
        extrapolated: the workload lies outside the calibrated pixel or batch range.
        warnings: what to be careful about (extrapolation, a poor fit, failed calibration cells).
        notes: which parts are measured and which modelled, and how.
        basis: the run and cells the fit rests on.
    """

    model: str
    device: str
    precision: str
    optimizations: str
    workload: Workload
    time_s: float
    interval: Interval
    call_s: float
    call_interval: Interval
    components: list[Component]
    peak_bytes: float
    peak_interval: Interval
    memory_parts: list[MemoryPart]
    memory_metric: str
    peak_phase: str
    extrapolated: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    basis: Basis | None = None

    @property
    def measured(self) -> bool:
        """Every part comes from this optimization set's own calibration (nothing derived)."""
        return all(c.source == MEASURED for c in self.components) and all(p.source == MEASURED for p in self.memory_parts)

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measured"] = self.measured
        return data
