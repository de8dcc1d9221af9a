"""Precision names (``fp32``, ``fp16``, ``bf16``, and the device-dependent ``auto``/``half``).

Cheap to import (no torch until :data:`DTYPES` is read), so a config can be checked before torch
loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from diffprof.config.values import PRECISION_ALIASES, PRECISIONS, check_precision

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_PRECISIONS", "PRECISIONS", "PRECISION_ALIASES", "Precision", "check_precision", "resolve_precision"]

Precision = Literal["fp32", "fp16", "bf16"]
#: Device-dependent choices: ``auto`` = what diffusers users run (fp16 on CUDA, fp32 on CPU);
#: ``half`` = mixed/half precision the device supports (fp16 on CUDA, bf16 on CPU).
DEVICE_PRECISIONS = {"auto": ("fp16", "fp32"), "half": ("fp16", "bf16")}


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto``/``half`` -> the concrete precision for ``device``; others are checked and returned."""
    if precision in DEVICE_PRECISIONS:
        cuda, cpu = DEVICE_PRECISIONS[precision]
        return cuda if device.type == "cuda" else cpu  # type: ignore[return-value]
    return check_precision(precision)  # type: ignore[return-value]


def __getattr__(name: str) -> Any:
    """``DTYPES`` (precision -> ``torch.dtype``), built on first use so importing this module does
    not import torch."""
    if name == "DTYPES":
        import torch

        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        globals()["DTYPES"] = dtypes
        return dtypes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
