"""Human-readable numbers for tables and reports (formatting only; data stays in SI base units)."""

from __future__ import annotations

import math


def fmt_ns(ns: float | None) -> str:
    """A duration in the unit that keeps 3-4 significant digits (``1.23 ms``)."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "-"
    a = abs(ns)
    if a >= 1e9:
        return f"{ns / 1e9:.3g} s" if a < 1e12 else f"{ns / 1e9:.0f} s"
    if a >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    if a >= 1e3:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns:.0f} ns"


def fmt_seconds(s: float | None) -> str:
    return "-" if s is None else fmt_ns(s * 1e9)


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units (``1.50 GiB``): GPU memory is sized in powers of two."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    a = abs(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if a >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.2g}%" if abs(x) < 0.1 else f"{100 * x:.1f}%"


def fmt_si(value: float | None, unit: str, digits: int = 3) -> str:
    """A number with an SI prefix and its unit (``1.61 TFLOP``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"
