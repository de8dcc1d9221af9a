"""The device an engine runs on: resolving a name to a device, synchronizing it, cleaning it,
and whether what it times now is a fresh process's.

One place for what the engine (around loading, each call and closing), ``measure_cell`` (between
warm-up and repeats) and the workers (building a profiler for a cell) all need, so a GPU is
synchronized before a clock is read and cleaned between measurements the same way everywhere.
"""

from __future__ import annotations

import gc

import torch

from diffprof.errors import ConfigError
from diffprof.profiler import cupti_left_attached


def resolve_engine_device(device: str | torch.device | None) -> torch.device:
    """``auto`` (or None): the current CUDA device when there is one, else the CPU. A name that is
    not a device, or CUDA on a host without it, is a :class:`ConfigError` that says what to pass."""
    if device in (None, "auto"):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a device", "use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is visible", "use --device cpu, or check drivers / CUDA_VISIBLE_DEVICES")
    return dev


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a host clock read next sees it finished (CPU: nothing to wait for)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_imports_frozen = False


def clean(device: torch.device, *, reset_peaks: bool = False) -> None:
    """Collect garbage and hand cached device memory back, so the next measurement starts from what
    is really held; ``reset_peaks`` also restarts the allocator's peak counters (between a cell's
    phases, never inside a profiled operation: see ``CudaMemoryTracker``).

    The first clean of a process comes before its first engine loads (``Engine.load`` cleans before
    it loads), when what is alive is mostly imports: ~450k objects with torch and diffusers, which
    every full collection walked again (0.3-0.8 s each, twice a cell and twice an engine). They are
    frozen then (``gc.freeze``), so later collections walk only what came after, engines included,
    whose cycles they still free. A cycle made before that first clean is never collected
    (``gc.unfreeze()`` gives it back to the collector)."""
    global _imports_frozen
    gc.collect()
    if not _imports_frozen:
        gc.freeze()
        _imports_frozen = True
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        if reset_peaks:
            torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int | None, int | None]:
    """The allocator's (allocated, reserved) peaks since they were last reset; (None, None) off CUDA."""
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def timing_note(device: torch.device) -> str | None:
    """Why times measured now on ``device`` are not a fresh process's, if they are not: read before a
    call, so a ``detailed`` call's own capture does not flag it."""
    if device.type == "cuda" and cupti_left_attached():
        return ("a detailed kernel capture earlier in this process left CUPTI attached, which makes every kernel launch dearer "
                "(SD 1.5 eager ran 1.58x slower, H100): time in a process that has not run level detailed")
    return None
