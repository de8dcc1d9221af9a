"""Human-readable numbers for tables and reports (formatting only; data stays in SI base units).

Every function rounds to its significant figures *first* and picks the unit after: 0.9995 s at
three figures is ``1 s``, never ``1e+03 ms`` (``torch.utils.benchmark.select_unit`` picks the unit
from the raw value, which is how a ``%.3g`` after it prints ``1e+03``). No result is written in
exponent notation except a bare number far outside 1e-4..1e15. Trailing zeros are dropped
(``3 GiB``, ``1.5 s``), as ``%g`` does.

:func:`quantity` returns the number and the unit apart, so a spread (``[q1-q3]``) can be printed
in its median's unit with the same decimals (:func:`spread_text`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

#: (unit, scale) ladders, smallest first; a rounded value of 1000 or more moves one rung up.
TIME_UNITS: tuple[tuple[str, float], ...] = (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))
BYTE_UNITS: tuple[tuple[str, float], ...] = (("B", 1.0), ("KiB", 2.0**10), ("MiB", 2.0**20), ("GiB", 2.0**30), ("TiB", 2.0**40))
SI_PREFIXES: tuple[tuple[str, float], ...] = (("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15))


def _absent(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _round_decimal(x: Decimal, n: int) -> Decimal:
    if x == 0:
        return x
    exponent = x.adjusted() - n + 1  # adjusted(): the power of ten of the leading digit
    return x.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)


def round_sig(x: float, n: int) -> float:
    """``x`` rounded half up to ``n`` significant figures, in decimal (``torch.utils.benchmark``'s
    ``trim_sigfig`` in binary floating point rounds 999.95 to 999.9)."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(_round_decimal(Decimal(repr(float(x))), n))


def decimals_for(x: float, n: int) -> int:
    """Decimals that show ``n`` significant figures of ``x`` (0 for 123 at three figures)."""
    if x == 0 or not math.isfinite(x):
        return 0
    return max(0, n - 1 - math.floor(math.log10(abs(x))))


def plain(x: float, decimals: int) -> str:
    """``x`` with at most ``decimals`` decimals, trailing zeros dropped, never an exponent."""
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity(value: float, ladder: Sequence[tuple[str, float]], digits: int = 3) -> tuple[float, str, int]:
    """``(scaled value, unit, decimals)`` of a finite ``value`` on ``ladder`` at ``digits``
    significant figures: the rung is chosen after rounding, so 999.95 ms is ``1 s``."""
    a = abs(value)
    if a == 0:  # in the base unit: 0 s, 0 B
        return 0.0, next((u for u, scale in ladder if scale == 1.0), ladder[0][0]), 0
    index = 0
    for i, (_, scale) in enumerate(ladder):
        if a >= scale:
            index = i
    exact = Decimal(repr(float(a)))
    while True:
        unit, scale = ladder[index]
        scaled = float(_round_decimal(exact / Decimal(repr(scale)), digits))
        if scaled >= 1000 and index + 1 < len(ladder):
            index += 1
            continue
        return math.copysign(scaled, value), unit, decimals_for(scaled, digits)


def fmt_quantity(value: float | None, ladder: Sequence[tuple[str, float]], digits: int = 3, suffix: str = "") -> str:
    """``value`` on ``ladder`` as ``1.23 ms``; ``-`` when absent, ``inf``/``-inf`` as such."""
    if _absent(value):
        return "-"
    assert value is not None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    scaled, unit, decimals = quantity(value, ladder, digits)
    return f"{plain(scaled, decimals)} {unit}{suffix}"


def spread_text(median: float, low: float, high: float, ladder: Sequence[tuple[str, float]], digits: int = 3) -> str:
    """``1.2 s [1.19–1.21]``: the median at ``digits`` figures (trailing zeros kept: they are
    figures the spread supports), then ``[low–high]`` in the median's unit at one figure more, so
    bounds close to the median stay apart from it."""
    if any(_absent(v) or math.isinf(v) for v in (median, low, high)):
        return fmt_quantity(median, ladder, digits)
    scaled, unit, decimals = quantity(median, ladder, digits)
    scale = Decimal(repr(dict(ladder)[unit]))
    places = decimals_for(scaled, digits + 1)  # one figure more than the median, both bounds alike
    q = Decimal(1).scaleb(-places)
    bounds = [f"{(Decimal(repr(float(v))) / scale).quantize(q, rounding=ROUND_HALF_UP):f}" for v in (low, high)]
    return f"{scaled:.{decimals}f} {unit} [{bounds[0]}–{bounds[1]}]"  # the median keeps its zeros: 1.20


def fmt_ns(ns: float | None, digits: int = 3) -> str:
    """A duration given in nanoseconds (``1.23 ms``); whole seconds above 1000 s (``4210 s``)."""
    if _absent(ns):
        return "-"
    assert ns is not None
    return fmt_seconds(ns / 1e9, digits)


def fmt_seconds(s: float | None, digits: int = 3) -> str:
    """A duration in the unit that keeps ``digits`` significant figures (``999.95 ms`` -> ``1 s``)."""
    if not _absent(s) and s is not None and math.isfinite(s) and abs(s) >= 1000:
        return f"{s:.0f} s"
    return fmt_quantity(s, TIME_UNITS, digits)


def fmt_bytes(n: float | None, digits: int = 3) -> str:
    """Bytes in binary units (``1.5 GiB``): GPU memory is sized in powers of two. Under 1 KiB the
    count is exact (``1023 B``); 1000 MiB and more is written in GiB (``0.977 GiB``)."""
    if not _absent(n) and n is not None and math.isfinite(n) and abs(n) < 1024:
        return f"{n:.0f} B"
    return fmt_quantity(n, BYTE_UNITS, digits)


def fmt_pct(x: float | None, digits: int = 3) -> str:
    """A fraction as a percentage: one decimal from 10% up (``41.0%``), else two figures (``4.2%``)."""
    if _absent(x):
        return "-"
    assert x is not None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    pct = 100 * x
    if abs(pct) >= 10:
        return f"{pct:.1f}%"
    r = round_sig(pct, 2)
    return plain(r, decimals_for(r, 2)) + "%"


def fmt_si(value: float | None, unit: str, digits: int = 3) -> str:
    """A number with an SI prefix and its unit (``1.61 TFLOP``)."""
    return fmt_quantity(value, SI_PREFIXES, digits, suffix=unit) if not _absent(value) else "-"


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A bare number at ``digits`` significant figures (``28.25``, ``1000``, ``0.0123``); exponent
    notation only outside 1e-4..1e15, where plain digits would be unreadable."""
    if _absent(value):
        return "-"
    assert value is not None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and not 1e-4 <= abs(value) < 1e15:
        return f"{value:.{max(0, digits - 1)}e}"
    r = round_sig(value, digits)
    return plain(r, decimals_for(r, digits))
