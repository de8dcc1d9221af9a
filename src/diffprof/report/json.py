"""JSON: the whole run, lossless, and :func:`load_run` to read it back into the same objects.

Artifacts are base64 strings (``include_artifacts=False`` leaves them out for a small file). The
output is strict JSON that any parser accepts: a non-finite float in metrics or samples (a NaN
from a failed measurement) is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``
and read back as the float (:meth:`~diffprof.results.CellResult.from_dict` accepts those names).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from diffprof.errors import InputError
from diffprof.report.base import Renderer, ReportOptions, register
from diffprof.results import RunInfo

FORMAT = "diffprof-run"
VERSION = 1


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


def run_to_dict(run: RunInfo, with_artifacts: bool = True) -> dict[str, Any]:
    """:meth:`RunInfo.to_dict` under the format marker and version :func:`run_from_dict` checks."""
    return {"format": FORMAT, "version": VERSION, **run.to_dict(with_artifacts=with_artifacts)}


def run_from_dict(data: dict[str, Any]) -> RunInfo:
    """The :class:`RunInfo` a json report holds (artifacts too, when it kept them).

    Checks the format marker and version, then :meth:`RunInfo.from_dict` checks every field.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError("not a diffprof run JSON (no \"format\": \"diffprof-run\")", "pass a file written by the json report format")
    version = data.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"run JSON version {version!r} is not a number", "pass a file written by the json report format")
    if version > VERSION:
        raise InputError(f"run JSON version {data['version']} is newer than this diffprof reads ({VERSION})", "upgrade diffprof")
    return RunInfo.from_dict(data)


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
