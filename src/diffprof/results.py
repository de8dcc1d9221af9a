"""Benchmark results: plain data that flows measure -> store -> render.

A *run* is one invocation of ``diffprof bench`` (or of a Python method); it holds *cells*, one per
point of a sweep. A cell keeps its raw samples (``samples``) and derives its statistics from them,
so a stored cell can always be re-analysed (significance tests in ``compare`` need the samples).
Both own their serialization: ``to_dict`` gives plain JSON-ready data and ``from_dict`` checks it
and reads it back (the json report, worker processes). What each metric means lives in
:mod:`diffprof.metrics`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from diffprof.errors import InputError
from diffprof.stats import SampleStats

T = TypeVar("T")

CellStatus = Literal["ok", "failed"]

#: The settings key under which a cell or generation says why it did not run the way its
#: optimizations asked (a CUDA graph capture refused, a task diffprof's loop does not cover);
#: written by the engine, shown by every table, ``generate`` and ``tune``.
FAST_PATH_NOTE = "fast_path_note"

#: The settings key under which a cell or generation says its times are not a fresh process's: a
#: ``detailed`` kernel capture earlier in the same process left CUPTI attached, which makes every
#: later kernel launch dearer (``profiler.trackers.cupti_left_attached``).
TIMING_NOTE = "timing_note"

#: The settings key under which a cell or generation says a tokenizer is one of diffprof's stand-ins
#: (T5, Gemma: vocabularies that cannot be had offline): sequence lengths, and so time and memory,
#: are the real model's; token ids and images are not (``models.stand_ins``).
STAND_IN_NOTE = "stand_in_note"

#: The settings key under which a cell or generation says it was timed at profiler level
#: ``detailed``: its kernel capture makes every call several times slower (tiny-sd on a CPU: 68 ->
#: 398 ms per image), so those times are the profiler's as much as the model's.
PROFILE_NOTE = "profile_note"

#: The settings key under which a cell says what its run left out on this device (a run-wide
#: offload switch on a CPU, where the weights already live in host memory).
DEVICE_NOTE = "device_note"

#: The settings key under which a cell says its peak memory is not its own: host RSS measured in a
#: process that ran other cells first, a high-water mark that only grows in cell order.
MEMORY_NOTE = "memory_note"

#: The settings key under which a cell or generation says what the ``fast`` preset left out on this
#: device: an element it holds only where the device runs it (fp8 on a transformer, on a GPU without
#: float8 tensor cores).
PRESET_NOTE = "preset_note"

#: The settings key under which a calibration cell says it was measured twice: its first measurement
#: disagreed with what the other cells' fit predicts, and which of the two the calibration keeps
#: (``suites.recalibrate``; the other is kept under ``settings["retake"]``).
CALIBRATION_NOTE = "calibration_note"

#: The settings key under which a cell says its FLOPs could not be counted, and why (a transformer that
#: reads its mask's values, Lumina 2's, cannot be replayed without data): no FLOPs, MFU or TFLOP/s, not zero.
FLOPS_NOTE = "flops_note"

#: Every per-cell note, in the order tables list them.
NOTE_KEYS = (FAST_PATH_NOTE, PRESET_NOTE, TIMING_NOTE, PROFILE_NOTE, DEVICE_NOTE, MEMORY_NOTE, CALIBRATION_NOTE, STAND_IN_NOTE, FLOPS_NOTE)
#: Notes about the model rather than the cell: a table lists each distinct one once, not per cell.
MODEL_NOTES = (STAND_IN_NOTE, FLOPS_NOTE)

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
        rounds: per-round values of the metrics measured in every round (``s_per_image`` of
            round 1, 2, ...): what ``compare`` tests, since rounds interleaved across a run's
            cells carry the drift between them that repeats of one round do not. Empty for cells
            measured in one round (and those older versions stored).
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
    rounds: dict[str, list[float]] = field(default_factory=dict)
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

    @property
    def round_count(self) -> int:
        """Rounds the cell was measured in (1 for a cell measured in one go)."""
        return max((len(v) for v in self.rounds.values()), default=1)

    def stats(self, sample: str) -> SampleStats:
        """Statistics of one raw sample series (e.g. ``stats("call_s").median``)."""
        return SampleStats.from_samples(self.samples.get(sample, []), "s" if sample.endswith("_s") else "")

    @property
    def label(self) -> str:
        """``scheduler=euler, steps=20``: how the cell is named in tables."""
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(default)"

    def to_dict(self, with_artifacts: bool = False) -> dict[str, Any]:
        """Plain data (artifacts base64-encoded when asked); :meth:`from_dict` reads it back.

        Non-finite floats stay floats: a strict JSON writer must spell them (the json report
        writes ``"NaN"``, which :meth:`from_dict` accepts).
        """
        data: dict[str, Any] = {
            "id": self.id,
            "suite": self.suite,
            "labels": self.labels,
            "settings": self.settings,
            "status": self.status,
            "error": self.error,
            "metrics": self.metrics,
            "samples": self.samples,
            "rounds": self.rounds,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cell_key": self.cell_key,
        }
        if with_artifacts:
            data["artifacts"] = {k: base64.b64encode(v).decode() for k, v in self.artifacts.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> CellResult:
        """The cell :meth:`to_dict` wrote (older writers' data too: absent fields take defaults).

        Raises:
            InputError: ``data`` is not a cell: a missing suite, a field of the wrong type, an
                unknown status, a non-number metric or sample, artifacts that are not base64.
        """
        data = _mapping(data, "cell")
        status = data.get("status", "ok")
        if status not in ("ok", "failed"):
            raise InputError(f"cell status must be 'ok' or 'failed', not {status!r}", _HINT)
        samples = _field(data, "samples", dict, {})
        rounds = _field(data, "rounds", dict, {})
        try:
            artifacts = {str(k): base64.b64decode(v, validate=True) for k, v in _field(data, "artifacts", dict, {}).items()}
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InputError(f"cell artifacts are not valid base64: {exc}", _HINT) from exc
        return cls(
            suite=_required(data, "suite", str),
            labels=_field(data, "labels", dict, {}),
            settings=_field(data, "settings", dict, {}),
            status=status,
            error=_field(data, "error", str, None),
            metrics={str(k): _number(v, f"metric {k}") for k, v in _field(data, "metrics", dict, {}).items()},
            samples={str(k): [_number(x, f"sample {k}") for x in _list(v, f"sample {k}")] for k, v in samples.items()},
            artifacts=artifacts,
            rounds={str(k): [_number(x, f"round {k}") for x in _list(v, f"round {k}")] for k, v in rounds.items()},
            started_at=_field(data, "started_at", str, ""),
            finished_at=_field(data, "finished_at", str, ""),
            id=_field(data, "id", int, None),
            cell_key=_field(data, "cell_key", str, None),
        )


@dataclass
class RunInfo:
    """One benchmark run as stored: what was asked, where, and when.

    ``name`` is an optional user label (``--name baseline``) that run references accept; ``uid``
    identifies the run in every store it is copied to (``id`` is its number in one store).
    ``counts`` maps cell status to how many cells have it (``{"ok": 5, "failed": 1}``); the store
    fills it even when the cells themselves are not loaded, so listing runs stays cheap.
    ``machine`` is the state of the host while the run measured (load, CPU time other processes
    took, clocks; :mod:`diffprof.profiler.machine`), empty for runs older versions stored.
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
    uid: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, with_artifacts: bool = False) -> dict[str, Any]:
        """Plain data with every cell (:meth:`CellResult.to_dict`); :meth:`from_dict` reads it back."""
        return {
            "id": self.id,
            "uid": self.uid,
            "name": self.name,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "command": self.command,
            "config": self.config,
            "environment": self.environment,
            "machine": self.machine,
            "counts": self.counts,
            "cells": [c.to_dict(with_artifacts=with_artifacts) for c in self.cells],
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunInfo:
        """The run :meth:`to_dict` wrote, cells included.

        Raises:
            InputError: ``data`` is not a run (see :meth:`CellResult.from_dict` for the cells).
        """
        data = _mapping(data, "run")
        return cls(
            id=_required(data, "id", int),
            created_at=_required(data, "created_at", str),
            finished_at=_field(data, "finished_at", str, None),
            status=_required(data, "status", str),
            command=_field(data, "command", str, ""),
            config=_field(data, "config", dict, {}),
            environment=_field(data, "environment", dict, {}),
            cells=[CellResult.from_dict(c) for c in _list(data.get("cells", []), "cells")],
            name=_field(data, "name", str, None),
            counts={str(k): int(v) for k, v in _field(data, "counts", dict, {}).items()},
            uid=_field(data, "uid", str, None),
            machine=_field(data, "machine", dict, {}),
        )

    @property
    def failed_cells(self) -> list[CellResult]:
        return [c for c in self.cells if not c.ok]

    def suites(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.cells:
            seen.setdefault(c.suite, None)
        return list(seen)


# ---------------------------------------------------------------------------------------------
# Reading plain data back, with errors that say which field is wrong

_HINT = "pass data written by CellResult.to_dict / RunInfo.to_dict (e.g. `diffprof report --format json`)"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(f"a {what} must be a mapping, not {type(data).__name__}", _HINT)
    return data


def _type_name(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)


def _required(data: dict[str, Any], key: str, kind: type[T]) -> T:
    if key not in data or data[key] is None:
        raise InputError(f"run data is missing or mangles field {key!r} (absent)", _HINT)
    return _field(data, key, kind, data[key])


def _field(data: dict[str, Any], key: str, kind: type[T], default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f"run data is missing or mangles field {key!r} ({_type_name(kind)} expected, got {type(value).__name__})", _HINT)
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"run data is missing or mangles field {what!r} (a list expected, got {type(value).__name__})", _HINT)
    return list(value)


def _number(value: Any, what: str) -> float:
    """A float from a number or from the names strict JSON writers use for non-finite ones."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"run data is missing or mangles field {what!r} (a number expected, got {value!r})", _HINT)
    return float(value)
