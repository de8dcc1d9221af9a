"""Background sampling of what has no event to hook: host RSS peak and, on NVIDIA GPUs, the
memory NVML sees in use (allocator + context + other processes) and the energy counter.

``ResourceSampler.track()`` is a context manager (``try/finally``) around a measured region; a
daemon thread samples every ``interval_s`` and the result is a small dataclass.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from diffprof.profiler.trackers import HostMemoryTracker


@dataclass
class ResourceSample:
    host_peak_rss: int
    nvml_peak_used: int | None = None
    energy_j: float | None = None
    samples: int = 0


class Nvml:
    """Lazy, failing-soft NVML access for one torch CUDA device (matched by UUID, so
    ``CUDA_VISIBLE_DEVICES`` renumbering cannot point at the wrong GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.handle: Any = None
        self._pynvml: Any = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            props = torch.cuda.get_device_properties(device)
            uuid = str(getattr(props, "uuid", ""))
            if uuid:
                uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            else:
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self._pynvml = pynvml
        except Exception:  # no driver, no library, a MIG slice: NVML numbers are optional
            self.handle = None

    @property
    def available(self) -> bool:
        return self.handle is not None

    def used_bytes(self) -> int | None:
        if self.handle is None:
            return None
        try:
            return int(self._pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        except Exception:
            return None

    def energy_mj(self) -> int | None:
        """Total energy since driver load in millijoules (Volta and newer), else None."""
        if self.handle is None:
            return None
        try:
            return int(self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:
            return None

    def describe(self) -> dict[str, Any]:
        if self.handle is None:
            return {}
        p = self._pynvml
        out: dict[str, Any] = {}
        for key, fn in (("name", p.nvmlDeviceGetName), ("power_limit_w", p.nvmlDeviceGetPowerManagementLimit)):
            try:
                value = fn(self.handle)
                out[key] = value / 1000 if key == "power_limit_w" else (value.decode() if isinstance(value, bytes) else value)
            except Exception:
                pass
        return out


class ResourceSampler:
    """Samples host RSS and NVML memory in a thread; reads the energy counter at both ends."""

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device = device
        self.interval_s = interval_s
        self._host = HostMemoryTracker()
        self._nvml = Nvml(device)

    @contextmanager
    def track(self) -> Iterator[ResourceSample]:
        result = ResourceSample(host_peak_rss=self._host.rss())
        stop = threading.Event()
        energy0 = self._nvml.energy_mj()

        def sample() -> None:
            while not stop.is_set():
                rss = self._host.rss()
                if rss > result.host_peak_rss:
                    result.host_peak_rss = rss
                used = self._nvml.used_bytes()
                if used is not None and (result.nvml_peak_used is None or used > result.nvml_peak_used):
                    result.nvml_peak_used = used
                result.samples += 1
                stop.wait(self.interval_s)

        thread = threading.Thread(target=sample, name="diffprof-sampler", daemon=True)
        thread.start()
        try:
            yield result
        finally:
            stop.set()
            thread.join()
            result.host_peak_rss = max(result.host_peak_rss, self._host.rss())
            energy1 = self._nvml.energy_mj()
            if energy0 is not None and energy1 is not None:
                result.energy_j = (energy1 - energy0) / 1e3


def process_peak_rss() -> int:
    """Peak RSS of this process over its lifetime (what `--isolate` cells report)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)
