"""The one formatter: how every table, caption and figure prints a metric, a label or a setting.

A metric value prints as the registry says (:mod:`diffprof.metrics`: a duration, a size, a
percentage, an SI-prefixed quantity or a bare number whose unit is in the column header), so
``show``, ``compare``, the console, markdown and html reports print one value one way. Names a
store from another version holds but the registry lacks print generically (seconds for ``_s``,
bytes for ``_bytes``, else a number).

Significant figures come from the spread when there is one (:func:`format_spread`: the median
with as many figures as its samples support, then ``[q1–q3]``); the rounding itself, and the unit
chosen after it, live in :mod:`diffprof.units`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from diffprof.metrics import metric
from diffprof.stats import MAX_FIGURES, SampleStats
from diffprof.units import BYTE_UNITS, SI_PREFIXES, TIME_UNITS, fmt_bytes, fmt_number, fmt_pct, fmt_seconds, fmt_si, round_sig, spread_text

#: Below this many samples the quartiles are interpolations between two or three values, so a
#: spread is shown as the whole range ``[min–max]`` instead (the table's legend says which).
QUARTILES_FROM = 4


def missing(value: Any) -> bool:
    """No value to show: ``None`` or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_metric(name: str, value: float | None, digits: int | None = None) -> str:
    """A metric value as a table shows it: ``1.23 s``, ``4.5 GiB``, ``12.3``, ``41.0%``; ``-`` if
    absent (``None`` or NaN). ``digits`` significant figures, default the registry's (3 for times
    and sizes)."""
    if value is None or missing(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    m = metric(name)
    if m.format == "seconds":
        return fmt_seconds(value, digits or 3)
    if m.format == "bytes":
        return fmt_bytes(value, digits or 3)
    if m.format == "percent":
        return fmt_pct(value)
    if m.format == "si":
        return fmt_si(value, m.unit, digits or m.digits)
    return fmt_number(value, digits or m.digits)


def format_spread(name: str, stats: SampleStats) -> str:
    """``1.2 s [1.19–1.21]``: the median with the figures its spread supports, then the
    interquartile range (from :data:`QUARTILES_FROM` samples; fewer give ``[min–max]``) in the
    median's unit. One sample: the value alone."""
    if stats.count == 0:
        return "-"
    digits = stats.significant_figures
    if stats.count == 1:
        return format_metric(name, stats.median, digits)
    low, high = (stats.q1, stats.q3) if stats.count >= QUARTILES_FROM else (stats.min, stats.max)
    while digits < MAX_FIGURES and not low <= round_sig(stats.median, digits) <= high:
        digits += 1  # 285.7 at two figures is 290, outside [283–289]: one figure more
    ladder = {"seconds": TIME_UNITS, "bytes": BYTE_UNITS, "si": SI_PREFIXES}.get(metric(name).format)
    if ladder is None:
        return f"{format_metric(name, stats.median, digits)} [{format_metric(name, low, digits)}–{format_metric(name, high, digits)}]"
    return spread_text(stats.median, low, high, ladder, digits)


SPREAD_LEGEND = (
    f"median [25th–75th percentile] of the n timed repeats ([min–max] when n < {QUARTILES_FROM}); "
    "the median has as many figures as its spread supports"
)


def metric_header(name: str) -> str:
    """The column title of a metric (``s/image``; an unregistered name is its own header)."""
    return metric(name).header


def format_value(value: Any) -> str:
    """A label or setting value: numbers without trailing zeros, containers as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:g}"
        return repr(value) if "e" in text and math.isfinite(value) and 1e-4 <= abs(value) < 1e15 else text
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


def join_limited(items: list[str], limit: int = 4, sep: str = "; ") -> str:
    """``a; b; c and 3 more``: a list a sentence can carry."""
    if len(items) <= limit:
        return sep.join(items)
    return sep.join(items[:limit]) + f" and {len(items) - limit} more"
