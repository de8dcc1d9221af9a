"""Atomic file writes for caches that several processes share (local executor workers, parallel
runs): a reader sees the old file or the new one, never half of one, and two writers never
interleave their bytes in one temporary file. And strict JSON for files other tools read."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to a private temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as None, in nested dicts, lists and tuples:
    JSON has no NaN, and strict parsers (``jq``, browsers' ``JSON.parse``) refuse Python's ``NaN``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """Strict JSON text: non-finite floats become null (:func:`finite`); other values JSON cannot
    hold are kept as their ``str``."""
    return json.dumps(finite(value), allow_nan=False, default=str, **kwargs)
