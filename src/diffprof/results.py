"""Benchmark results: plain data that flows measure -> store -> render.

A *run* is one invocation of ``diffprof bench`` (or of a Python method); it holds *cells*, one per
point of a sweep. A cell keeps its raw samples (``samples``) and derives its statistics from them,
so a stored cell can always be re-analysed (significance tests in ``compare`` need the samples).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from diffprof.stats import SampleStats

CellStatus = Literal["ok", "failed"]

#: The settings key under which a cell or generation says why it did not run the way its
#: optimizations asked (a CUDA graph capture refused, a task diffprof's loop does not cover);
#: written by the engine, shown by every table, ``generate`` and ``tune``.
FAST_PATH_NOTE = "fast_path_note"

#: The settings key under which a cell or generation says its times are not a fresh process's: a
#: ``detailed`` kernel capture earlier in the same process left CUPTI attached, which makes every
#: later kernel launch dearer (``profiler.trackers.cupti_left_attached``).
TIMING_NOTE = "timing_note"

#: Every per-cell note, in the order tables list them.
NOTE_KEYS = (FAST_PATH_NOTE, TIMING_NOTE)

def cell_key(suite: str, labels: dict[str, Any], settings: dict[str, Any]) -> str:
    """Stable identity of a cell within a run: what ``--resume`` uses to skip finished cells."""
    blob = json.dumps({"suite": suite, "labels": labels, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class CellResult:
    """One measured point of a sweep.

    Attributes:
        suite: the suite that produced it (``schedulers``, ``resolutions``, ...).
        labels: the swept axis values, e.g. ``{"scheduler": "euler"}``: what tables group by.
        settings: every effective setting of the cell (model, steps, size, optimizations, ...).
        status: ``ok`` or ``failed``; a failed cell keeps ``error`` and whatever was measured.
        metrics: scalar results, names from :data:`diffprof.metrics.METRICS` (medians where repeated).
        samples: raw per-repeat samples behind the metrics (``call_s``, ``step_s``, ...).
        artifacts: small binary outputs (a PNG of the first image, a JSON step timeline).
    """

    suite: str
    labels: dict[str, Any]
    settings: dict[str, Any]
    status: CellStatus = "ok"
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    id: int | None = None
    #: Identity of the *requested* cell (what resume matches); the measured ``settings`` carry more
    #: (source, engine reuse, quality notes), so the key cannot be derived from them.
    cell_key: str | None = None

    @property
    def key(self) -> str:
        return self.cell_key or cell_key(self.suite, self.labels, self.settings)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def stats(self, sample: str) -> SampleStats:
        """Statistics of one raw sample series (e.g. ``stats("call_s").median``)."""
        return SampleStats.from_samples(self.samples.get(sample, []), "s" if sample.endswith("_s") else "")

    @property
    def label(self) -> str:
        """``scheduler=euler, steps=20``: how the cell is named in tables."""
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(default)"

    def to_dict(self, with_artifacts: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "suite": self.suite,
            "labels": self.labels,
            "settings": self.settings,
            "status": self.status,
            "error": self.error,
            "metrics": self.metrics,
            "samples": self.samples,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if with_artifacts:
            import base64

            data["artifacts"] = {k: base64.b64encode(v).decode() for k, v in self.artifacts.items()}
        return data


@dataclass
class RunInfo:
    """One benchmark run as stored: what was asked, where, and when.

    ``name`` is an optional user label (``--name baseline``) that run references accept.
    ``counts`` maps cell status to how many cells have it (``{"ok": 5, "failed": 1}``); the store
    fills it even when the cells themselves are not loaded, so listing runs stays cheap.
    """

    id: int
    created_at: str
    finished_at: str | None
    status: str
    command: str
    config: dict[str, Any]
    environment: dict[str, Any]
    cells: list[CellResult] = field(default_factory=list)
    name: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed_cells(self) -> list[CellResult]:
        return [c for c in self.cells if not c.ok]

    def suites(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.cells:
            seen.setdefault(c.suite, None)
        return list(seen)
