"""The one formatter, case by case: each expected text is exact.

The cases %.3g got wrong (0.9995 s printed as "1e+03 ms", 1023.7 MiB as "1.02e+03 MiB") and the
edges every number format must survive (the last value below a unit, inf, NaN, 0, negatives);
then significant figures taken from the spread, and the spread itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffprof.report.format import format_metric, format_spread
from diffprof.stats import SampleStats
from diffprof.units import fmt_bytes, fmt_number, fmt_pct, fmt_seconds, fmt_si, round_sig

MiB, GiB = 2**20, 2**30

CASES = [
    # (metric, value, digits, expected)
    ("s_per_image", 0.9995, None, "1 s"),  # rounds to 1.00 s first, then picks the unit: never "1e+03 ms"
    ("s_per_image", 0.9995, 4, "999.5 ms"),
    ("s_per_image", 0.99995, None, "1 s"),  # 999.95 ms
    ("s_per_image", 0.99995, 4, "1 s"),  # 999.95 ms at four figures rounds up to 1000 ms = 1 s (decimal rounding, half up)
    ("peak_allocated_bytes", 1023.7 * MiB, None, "1 GiB"),  # never "1.02e+03 MiB"
    ("peak_allocated_bytes", 1023.7 * MiB, 4, "0.9997 GiB"),
    ("peak_allocated_bytes", GiB - 1, None, "1 GiB"),  # 1 GiB - 1 byte
    ("peak_allocated_bytes", GiB - 1, 4, "1 GiB"),
    ("peak_allocated_bytes", 1000 * MiB, None, "0.977 GiB"),  # four digits before the point move a unit up
    ("peak_allocated_bytes", 1023, None, "1023 B"),  # under 1 KiB bytes are exact
    ("s_per_image", math.inf, None, "inf"),
    ("s_per_image", -math.inf, None, "-inf"),
    ("psnr_db", math.inf, None, "inf"),  # an exact match against the reference
    ("peak_allocated_bytes", math.inf, None, "inf"),
    ("s_per_image", math.nan, None, "-"),  # NaN is "no value": the tables' dash
    ("peak_allocated_bytes", math.nan, None, "-"),
    ("ssim", None, None, "-"),
    ("s_per_image", 0.0, None, "0 s"),
    ("peak_allocated_bytes", 0, None, "0 B"),
    ("flops_per_image", 0.0, None, "0 FLOP"),
    ("mfu", 0.0, None, "0%"),
    ("steps_per_s", 0.0, None, "0"),
    ("s_per_image", -0.0123, None, "-12.3 ms"),  # a difference (compare) can be negative
    ("s_per_image", -0.9995, None, "-1 s"),
    ("peak_allocated_bytes", -5 * MiB, None, "-5 MiB"),
    ("psnr_db", -28.251, None, "-28.25"),
    ("mfu", -0.041, None, "-4.1%"),
    ("steps_per_s", 999.95, None, "1000"),  # a bare number: three figures, no exponent
    ("flops_per_image", 999.95e9, None, "1 TFLOP"),
    ("flops_per_image", 1.607e12, None, "1.61 TFLOP"),
    ("first_call_s", 113.8, None, "114 s"),
    ("load_s", 4210.3, None, "4210 s"),  # whole seconds past 1000 s
    ("vae_encode_s", 0.0121, None, "12.1 ms"),
    ("step_median_s", 2.5e-7, None, "250 ns"),
    ("mfu", 0.41, None, "41.0%"),
    ("mfu", 0.9995, None, "100.0%"),
    ("latent_rel_error", 0.0123, None, "0.0123"),
    ("latent_rel_error", 1.2e-5, None, "1.200e-05"),  # bare numbers far below 1e-4 keep an exponent: plain digits would not read
]


@pytest.mark.parametrize(("name", "value", "digits", "expected"), CASES)
def test_every_formatter_case(name, value, digits, expected):
    assert format_metric(name, value, digits) == expected


def test_no_value_of_any_unit_prints_an_exponent():
    """Across twenty decades, times, sizes, FLOPs and rates print plain digits."""
    for value in np.geomspace(1e-9, 1e12, 400):
        for v in (value, -value, round_sig(value, 3), round_sig(value, 2) - 1e-12 * value):
            texts = [fmt_seconds(v), fmt_seconds(v, 4), fmt_bytes(v * 1e3), fmt_si(v * 1e3, "FLOP")]
            texts += [fmt_number(v * 1e4, 3)] if 1e-4 <= abs(v * 1e4) < 1e15 else []  # bare numbers: plain within these bounds
            for text in texts:
                assert "e+" not in text and "e-" not in text, text
    assert fmt_pct(0.00042) == "0.042%"


SPREADS = [
    # (samples in seconds, expected): n < 4 shows [min–max], n >= 4 the quartiles
    ([1.188, 1.2, 1.212], "1.2 s [1.19–1.21]"),  # 1% spread: two figures are all it supports
    ([0.28286, 0.28571, 0.28857], "286 ms [282.9–288.6]"),  # 290 at two figures would sit outside its own bounds
    ([1.0, 1.0001, 0.9999, 1.0002], "1.000 s [1.0000–1.0001]"),  # 0.01% spread: four figures, zeros kept
    ([0.5, 0.52, 0.55, 0.6, 0.51], "520 ms [510–550]"),
    ([0.99, 1.01], "1.00 s [0.990–1.010]"),  # two samples: the default three figures
    ([0.7], "700 ms"),
]


@pytest.mark.parametrize(("samples", "expected"), SPREADS)
def test_spread_is_median_with_its_figures_and_the_range(samples, expected):
    assert format_spread("s_per_image", SampleStats.from_samples(samples)) == expected


def test_significant_figures_follow_the_spread():
    assert SampleStats.from_samples([1.0, 1.0, 1.0, 1.0]).significant_figures == 4  # no spread: the most
    assert SampleStats.from_samples([1.0, 2.0, 3.0, 4.0]).significant_figures == 2  # wide: the fewest
    assert SampleStats.from_samples([1.0, 1.001, 0.999, 1.0005, 0.9995]).significant_figures == 3
    assert SampleStats.from_samples([1.0, 1.5]).significant_figures == 3  # two samples say too little
    spread = format_spread("peak_allocated_bytes", SampleStats.from_samples([GiB - 1, GiB, GiB + 1, GiB]))
    assert spread == "1.000 GiB [1.0000–1.0000]"
