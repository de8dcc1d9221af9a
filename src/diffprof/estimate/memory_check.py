"""Will it fit? The peak memory of a call predicted before anything runs, against what the device has.

A batch of 100000 images on a CPU grows until the kernel kills the process, minutes later and with
no message. The activations of every phase (text encoders, UNet, VAE decode) are traced on the meta
device (:mod:`diffprof.estimate.activations`, no memory and no compute), so the peak of a workload
is known in a second: resident weights (as the offload mode places them) plus the largest phase's
activations, plus on a CPU the decoded images. That is a lower bound (allocator slack, workspaces
and the runtime come on top), so a refusal is certain to be needed, never a guess.

It is cheap on the common path: one trace at batch 1 per model and size, scaled by the batch. Only
a workload that this rough figure puts above half of what is available is traced exactly, at batch
1 and 2 (activation bytes are linear in the batch, whatever the switches: slicing keeps one image,
tiling one tile), and refused when even that does not fit.

Models without a traceable UNet architecture (DiT families, single files, Hub ids) are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffprof.config import RunConfig
from diffprof.engine.switches import Optimizations
from diffprof.errors import ResourceError
from diffprof.units import fmt_bytes

#: Below this share of what is available, the batch-scaled rough figure is trusted as it is.
ROUGH_SHARE = 0.5
#: Host bytes per decoded pixel on a CPU beyond the traced VAE output: the float32 numpy copy
#: (12 bytes) and the 8-bit PIL image (3 bytes) of ``output_type="pil"``.
HOST_BYTES_PER_PIXEL = 15


@dataclass(frozen=True)
class MemoryForecast:
    """The predicted peak of one call, and what the device has for it."""

    peak_bytes: float
    weight_bytes: float
    activation_bytes: float
    available_bytes: float
    where: str
    batch: int
    #: The largest batch predicted to fit (0: not even one image).
    largest_batch: int
    exact: bool

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.available_bytes

    def reason(self) -> str:
        return (
            f"the predicted peak of batch {self.batch} is at least {fmt_bytes(self.peak_bytes)} of {self.where} "
            f"(weights {fmt_bytes(self.weight_bytes)} + activations {fmt_bytes(self.activation_bytes)}, traced), "
            f"more than the {fmt_bytes(self.available_bytes)} available"
        )

    def hint(self) -> str:
        fewer = f"a batch of at most {self.largest_batch}" if self.largest_batch >= 1 else "a smaller size"
        return f"use {fewer}, or memory switches (-O vae_slicing,vae_tiling), or pass --force to run it anyway"


def available_bytes(device: Any) -> tuple[float, str]:
    """Free memory where a call's peak lands: host RAM available on a CPU, free GPU memory on CUDA."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return float(free), f"{device} memory"
    import psutil

    return float(psutil.virtual_memory().available), "host memory"


def forecast(config: RunConfig, device: Any) -> MemoryForecast | None:
    """The peak of one call of ``config`` on ``device``; None for a model that cannot be traced."""
    arch = _architecture(config.model)
    if arch is None:
        return None
    from diffprof.engine.precision import resolve_precision
    from diffprof.estimate.workload import Workload

    precision = resolve_precision(config.precision, device)
    opts = Optimizations.parse(config.optimize)
    native = arch.native_size
    width, height = config.width or native, config.height or native
    available, where = available_bytes(device)

    def peak_at(batch: int, w: int, h: int) -> tuple[float, float, float]:
        """(peak, resident weights, activations) of the phase that peaks, at this batch and size."""
        from diffprof.estimate.phases import phases

        feats = arch.memory_features(Workload(w, h, 1, batch, config.guidance), precision, opts)
        parts = phases(feats, opts)
        name = max(parts, key=lambda p: sum(parts[p]))
        resident, act = parts[name]
        host = HOST_BYTES_PER_PIXEL * w * h * batch if device.type == "cpu" else 0.0
        return resident + act + host, resident, act + host

    # 1. rough: one trace at the native size, batch 1, scaled by pixels and batch
    one, weights, act1 = peak_at(1, native, native)
    scale = (width * height) / (native * native)
    if opts.attention in ("slicing", "eager") and scale > 1:
        scale *= scale  # explicit attention holds tokens x tokens scores
    rough = weights + act1 * scale * config.batch
    if rough <= ROUGH_SHARE * available:
        return MemoryForecast(rough, weights, rough - weights, available, where, config.batch, _largest(available, weights, act1 * scale, 0.0), exact=False)
    # 2. exact: batch 1 and 2 at the real size, extrapolated linearly in the batch
    p1, weights, a1 = peak_at(1, width, height)
    p2, _, a2 = peak_at(2, width, height)
    slope = max(a2 - a1, 0.0)
    act = a1 + slope * (config.batch - 1)
    return MemoryForecast(weights + act, weights, act, available, where, config.batch, _largest(available, weights, slope, a1 - slope), exact=True)


def check_fits(config: RunConfig, device: Any, *, what: str = "") -> MemoryForecast | None:
    """Raise a :class:`ResourceError` with the numbers when ``config``'s call is predicted not to fit
    (unless ``config.force``); the forecast otherwise (None when the model cannot be traced)."""
    if config.force:
        return None
    found = forecast(config, device)
    if found is not None and not found.fits:
        raise ResourceError((f"{what}: " if what else "") + found.reason(), found.hint())
    return found


def _largest(available: float, weights: float, per_image: float, fixed: float) -> int:
    if per_image <= 0:
        return 1 << 30
    return max(int((available - weights - fixed) // per_image), 0)


def _architecture(model: str) -> Any:
    """The traceable architecture of ``model``, or None (no UNet, or not a preset or folder)."""
    from diffprof.errors import ModelError
    from diffprof.estimate.architecture import Architecture
    from diffprof.models.presets import PRESETS

    preset = PRESETS.get(model)
    if preset is not None and preset.family not in ("sd", "sdxl"):
        return None
    try:
        arch = Architecture.for_model(model)
    except (ModelError, OSError, ValueError, KeyError):  # a folder without a UNet layout: not checked
        return None
    return arch if "unet" in arch.modules("fp32") else None
