"""JSON: the whole run, lossless, and :func:`load_run` to read it back into the same objects.

Artifacts are base64 strings (``include_artifacts=False`` leaves them out for a small file). The
output is strict JSON that any parser accepts: a non-finite float in metrics or samples (a NaN
from a failed measurement) is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``
and read back as the float.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from diffprof.errors import InputError
from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.results import CellResult, RunInfo

FORMAT = "diffprof-run"
VERSION = 1
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _strict(value: Any) -> Any:
    """Replace non-finite floats by their names (numpy scalars first become Python ones), so
    the text is standard JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _number(value: Any) -> Any:
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


def run_to_dict(run: RunInfo, with_artifacts: bool = True) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "id": run.id,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "status": run.status,
        "command": run.command,
        "config": run.config,
        "environment": run.environment,
        "cells": [c.to_dict(with_artifacts=with_artifacts) for c in run.cells],
    }


def _cell_from_dict(data: dict[str, Any]) -> CellResult:
    try:
        artifacts = {k: base64.b64decode(v, validate=True) for k, v in (data.get("artifacts") or {}).items()}
    except (binascii.Error, TypeError) as exc:
        raise InputError(f"cell artifacts are not valid base64: {exc}", "re-export the run with `diffprof report --format json`") from exc
    return CellResult(
        suite=data["suite"],
        labels=data.get("labels") or {},
        settings=data.get("settings") or {},
        status=data.get("status", "ok"),
        error=data.get("error"),
        metrics={k: _number(v) for k, v in (data.get("metrics") or {}).items()},
        samples={k: [_number(x) for x in v] for k, v in (data.get("samples") or {}).items()},
        artifacts=artifacts,
        started_at=data.get("started_at", ""),
        finished_at=data.get("finished_at", ""),
        id=data.get("id"),
    )


def run_from_dict(data: dict[str, Any]) -> RunInfo:
    """The :class:`RunInfo` a json report holds (artifacts too, when it kept them)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError("not a diffprof run JSON (no \"format\": \"diffprof-run\")", "pass a file written by the json report format")
    if data.get("version", 0) > VERSION:
        raise InputError(f"run JSON version {data['version']} is newer than this diffprof reads ({VERSION})", "upgrade diffprof")
    try:
        return RunInfo(
            id=data["id"],
            created_at=data["created_at"],
            finished_at=data.get("finished_at"),
            status=data["status"],
            command=data.get("command", ""),
            config=data.get("config") or {},
            environment=data.get("environment") or {},
            cells=[_cell_from_dict(c) for c in data.get("cells", [])],
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"run JSON is missing or mangles field {exc}", "pass a file written by the json report format") from exc


def load_run(source: str | bytes | Path) -> RunInfo:
    """Read a run from json report text or from a path to such a file."""
    if isinstance(source, Path):
        try:
            source = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read run JSON {source}: {exc.strerror}", "check the path") from exc
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise InputError(f"run JSON does not parse: {exc}", "pass a file written by the json report format") from exc
    return run_from_dict(data)


@register
class JsonRenderer(Renderer):
    name = "json"
    file_extension = "json"

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str:
        options = options or ReportOptions()
        data = _strict(run_to_dict(run, with_artifacts=options.include_artifacts))
        return json.dumps(data, indent=1, default=str, allow_nan=False)
