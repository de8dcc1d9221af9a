"""The one formatter: how every table, caption and figure prints a metric, a label or a setting.

A metric value prints as the registry says (:mod:`diffprof.metrics`: a duration, a size, a
percentage, an SI-prefixed quantity or a bare number whose unit is in the column header), so
``show``, ``compare``, the console, markdown and html reports print one value one way. Names a
store from another version holds but the registry lacks print generically (seconds for ``_s``,
bytes for ``_bytes``, else a number).
"""

from __future__ import annotations

import json
import math
from typing import Any

from diffprof.metrics import metric
from diffprof.units import fmt_bytes, fmt_pct, fmt_seconds, fmt_si


def missing(value: Any) -> bool:
    """No value to show: ``None`` or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_metric(name: str, value: float | None) -> str:
    """A metric value as a table shows it: ``1.23 s``, ``4.5 GiB``, ``12.3``, ``41.0%``; ``-`` if absent."""
    if value is None or missing(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    m = metric(name)
    if m.format == "seconds":
        return fmt_seconds(value)
    if m.format == "bytes":
        return fmt_bytes(value)
    if m.format == "percent":
        return fmt_pct(value)
    if m.format == "si":
        return fmt_si(value, m.unit, m.digits)
    return f"{value:.{m.digits}g}"


def metric_header(name: str) -> str:
    """The column title of a metric (``s/image``; an unregistered name is its own header)."""
    return metric(name).header


def format_value(value: Any) -> str:
    """A label or setting value: numbers without trailing zeros, containers as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def format_settings(settings: dict[str, Any], max_len: int = 80) -> str:
    """``model=sd15, steps=20``; long values (prompts) are cut to ``max_len`` characters."""
    parts = []
    for k, v in settings.items():
        text = format_value(v)
        if len(text) > max_len:
            text = text[: max_len - 1] + "…"
        parts.append(f"{k}={text}")
    return ", ".join(parts)


def first_line(text: str | None) -> str:
    """The first non-empty line of an error (tracebacks belong in the failure summary)."""
    if not text:
        return ""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""
