"""Plain data produced by the profiler: one :class:`OperationRecord` per operation, gathered in a
:class:`Profile` that owns its statistics and round-trips through JSON.

Nothing here measures or formats; the profiler fills records, exporters read them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from diffprof.stats import SampleStats

Level = Literal["off", "minimal", "standard", "detailed"]
LEVELS: tuple[Level, ...] = ("off", "minimal", "standard", "detailed")

SCHEMA_VERSION = 1


@dataclass(slots=True)
class OperationRecord:
    """One profiled operation. Times in nanoseconds, memory in bytes; ``None`` = not measured.

    ``gpu_ns`` comes from CUDA events recorded on the current stream at entry and exit; the
    ``*_peak`` fields are the highest allocator reading while the operation was open, children
    included (see :class:`diffprof.profiler.trackers.CudaMemoryTracker` for how nesting is kept
    exact).
    """

    id: int
    name: str
    category: str
    labels: dict[str, Any]
    thread_id: int
    thread_name: str
    parent_id: int | None
    depth: int
    start_ns: int
    wall_ns: int = 0
    gpu_ns: int | None = None
    #: GPU start relative to the profiler's reference event (placing operations on a GPU timeline).
    gpu_start_ns: int | None = None
    allocated_start: int | None = None
    allocated_end: int | None = None
    allocated_peak: int | None = None
    reserved_start: int | None = None
    reserved_end: int | None = None
    reserved_peak: int | None = None
    rss_start: int | None = None
    rss_end: int | None = None
    error: str | None = None
    #: Private: unresolved CUDA events (start, end) until :meth:`Profiler.profile` synchronizes once.
    _events: Any = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.category, self.name)

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.wall_ns

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_events")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperationRecord:
        names = {f.name for f in fields(cls)} - {"_events"}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown record fields {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class OperationStats:
    """Statistics of every record sharing one (category, name)."""

    category: str
    name: str
    wall: SampleStats
    gpu: SampleStats | None
    peak_allocated: int | None
    errors: int

    @property
    def count(self) -> int:
        return self.wall.count


@dataclass
class Profile:
    """Everything one profiler recorded, in the order operations finished."""

    level: Level
    device: str
    records: list[OperationRecord] = field(default_factory=list)
    started_at: str = ""
    #: Measured cost of one operation at this level (ns), from :func:`measure_overhead`.
    overhead_ns_per_op: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    trace_files: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- queries
    def __iter__(self) -> Iterator[OperationRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def find(self, name: str | None = None, category: str | None = None, **labels: Any) -> list[OperationRecord]:
        """Records matching a name, category and/or label values, in completion order."""
        return [
            r
            for r in self.records
            if (name is None or r.name == name)
            and (category is None or r.category == category)
            and all(r.labels.get(k) == v for k, v in labels.items())
        ]

    def children(self, record: OperationRecord) -> list[OperationRecord]:
        return [r for r in self.records if r.parent_id == record.id]

    def roots(self) -> list[OperationRecord]:
        return [r for r in self.records if r.parent_id is None]

    def stats(self) -> list[OperationStats]:
        """One :class:`OperationStats` per (category, name), in order of first appearance."""
        groups: dict[tuple[str, str], list[OperationRecord]] = {}
        for r in sorted(self.records, key=lambda r: r.start_ns):
            groups.setdefault(r.key, []).append(r)
        out = []
        for (category, name), recs in groups.items():
            gpu = [r.gpu_ns for r in recs if r.gpu_ns is not None]
            peaks = [r.allocated_peak for r in recs if r.allocated_peak is not None]
            out.append(
                OperationStats(
                    category=category,
                    name=name,
                    wall=SampleStats.from_samples([r.wall_ns for r in recs], "ns"),
                    gpu=SampleStats.from_samples(gpu, "ns") if gpu else None,
                    peak_allocated=max(peaks) if peaks else None,
                    errors=sum(r.failed for r in recs),
                )
            )
        return out

    def stat(self, name: str, category: str | None = None) -> OperationStats:
        for s in self.stats():
            if s.name == name and (category is None or s.category == category):
                return s
        raise KeyError(f"no operation named {name!r}" + (f" in category {category!r}" if category else ""))

    @property
    def total_root_ns(self) -> int:
        """Wall time covered by top-level operations (summed over threads)."""
        return sum(r.wall_ns for r in self.roots())

    @property
    def overhead_fraction(self) -> float | None:
        """Estimated share of the profiled time spent in the profiler itself."""
        if self.overhead_ns_per_op is None or not self.total_root_ns:
            return None
        return self.overhead_ns_per_op * len(self.records) / self.total_root_ns

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "level": self.level,
            "device": self.device,
            "started_at": self.started_at,
            "overhead_ns_per_op": self.overhead_ns_per_op,
            "metadata": self.metadata,
            "trace_files": self.trace_files,
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"profile schema {data.get('schema')!r} is not {SCHEMA_VERSION}; re-export it with this diffprof")
        return cls(
            level=data["level"],
            device=data["device"],
            records=[OperationRecord.from_dict(r) for r in data["records"]],
            started_at=data.get("started_at", ""),
            overhead_ns_per_op=data.get("overhead_ns_per_op"),
            metadata=dict(data.get("metadata", {})),
            trace_files=list(data.get("trace_files", [])),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        return cls.from_dict(json.loads(Path(path).read_text()))
