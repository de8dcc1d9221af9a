"""The static choices and value checks of the schema (names that need no registry above the config).

Scheduler names, optimization switches, suites and executors belong to registries in higher
layers; :func:`diffprof.suites.checks.check_config` checks those.
"""

from __future__ import annotations

import re
from typing import Any

from diffprof.errors import ConfigError, unknown_choice

TASKS = ("txt2img", "img2img", "inpaint")
DEVICES = ("auto", "cpu", "cuda")
#: What ``quality`` may list (see the field's help).
QUALITY_CHOICES = ("auto", "adherence", "convergence", "clip", "fidelity", "none")
#: Precisions a pipeline runs in; the engine maps each to its torch dtype.
PRECISIONS = ("fp32", "fp16", "bf16")
PRECISION_ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
#: Precisions chosen per device when the engine loads (``auto``: fp16 on CUDA, fp32 on CPU;
#: ``half``: fp16 on CUDA, bf16 on CPU).
DEVICE_DEPENDENT = ("auto", "half")


def check_size(name: str, value: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 8 or value % 8:
        raise ConfigError(
            f"{name} must be a positive multiple of 8, got {value!r}",
            "latents are 1/8 of the image size; try " + (f"{max(8, round(value / 8) * 8)}" if isinstance(value, (int, float)) else "512"),
        )


def parse_resolution(text: str) -> tuple[int, int]:
    """``"512x768"`` -> (512, 768); ``"512"`` -> (512, 512)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", str(text))
    if not m:
        raise ConfigError(f"resolution {text!r} is not WIDTHxHEIGHT", "e.g. 512x512 or 768x512")
    w, h = int(m.group(1)), int(m.group(2) or m.group(1))
    check_size("width", w)
    check_size("height", h)
    return w, h


def check_precision(precision: str) -> str:
    """``fp32``, ``fp16`` or ``bf16`` (``float16`` and the other torch names are accepted)."""
    precision = PRECISION_ALIASES.get(precision, precision)
    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, PRECISIONS)
    return precision


# ------------------------------------------------------------------ Spec.check functions
def size_value(name: str, value: int) -> int:
    check_size(name, value)
    return value


def resolution_value(name: str, text: str) -> str:
    parse_resolution(text)
    return text


def device_value(name: str, device: str) -> str:
    if not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        raise unknown_choice("device", device, DEVICES)
    return device


def precision_value(name: str, precision: str) -> str:
    if precision in DEVICE_DEPENDENT:
        return precision
    try:
        return check_precision(precision)
    except ConfigError:
        raise unknown_choice("precision", precision, [*PRECISIONS, *DEVICE_DEPENDENT]) from None


def fixed_precision_value(name: str, precision: str) -> str:
    return check_precision(precision)


def nonempty_value(name: str, text: str) -> str:
    """Text that names something (a model, a store): empty would silently mean the current folder
    or a temporary database."""
    if not text.strip():
        raise ConfigError(f"{name} must not be empty", f"give the {name} by name or path")
    return text


def strength_value(name: str, strength: Any) -> float:
    if not 0 < strength <= 1:
        raise ConfigError(f"strength must be in (0, 1], got {strength!r}", "1.0 ignores the init image entirely")
    return strength
