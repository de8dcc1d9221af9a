"""What the device can do: measured matmul peaks and memory bandwidth, cached per device.

MFU (model FLOPs utilization) needs a ceiling. Datasheet numbers are leads, not facts (clocks,
power caps and cooling differ), so diffprof measures: large dense matmuls in bf16 and fp16 (fp32 on
the CPU) on random data, and a large device-to-device copy (bytes read + written). Results are
cached in ``$DIFFPROF_CACHE_DIR/device/<name>.json`` so the probe runs once per device.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class DevicePeaks:
    """Measured ceilings of one device (FLOP/s and bytes/s)."""

    name: str
    kind: str
    matmul_flops: dict[str, float] = field(default_factory=dict)
    copy_bytes_per_s: float = 0.0
    memory_bytes: int = 0
    measured_at: str = ""
    torch_version: str = ""

    def peak(self, precision: str) -> float | None:
        """The matmul ceiling for a precision (fp16/bf16 on CUDA; fp32 on the CPU)."""
        return self.matmul_flops.get(precision) or (max(self.matmul_flops.values()) if self.matmul_flops else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cache_path(name: str) -> Path:
    root = Path(os.environ.get("DIFFPROF_CACHE_DIR", Path.home() / ".cache" / "diffprof"))
    return root / "device" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".json")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def _time(fn: Any, device: torch.device, repeats: int) -> float:
    for _ in range(2):
        fn()
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(repeats):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def measure_peaks(device: torch.device, quick: bool = False) -> DevicePeaks:
    """Probe the device (a few seconds on a GPU; ~1 s on the CPU)."""
    cuda = device.type == "cuda"
    n = (8192 if not quick else 4096) if cuda else (1024 if not quick else 512)
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16} if cuda else {"fp32": torch.float32, "bf16": torch.bfloat16}
    flops: dict[str, float] = {}
    for name, dtype in dtypes.items():
        a = torch.randn(n, n, device=device, dtype=dtype)  # random data: zeros run faster than real work
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = _time(lambda a=a, b=b: a @ b, device, 10 if cuda else 3)
        flops[name] = 2 * n**3 / seconds
        del a, b
    size = (1 << 30 if not quick else 1 << 28) if cuda else 1 << 26
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = _time(lambda: dst.copy_(src), device, 10 if cuda else 3)
    memory = torch.cuda.get_device_properties(device).total_memory if cuda else _host_memory()
    return DevicePeaks(
        name=device_name(device),
        kind=device.type,
        matmul_flops=flops,
        copy_bytes_per_s=2 * size / seconds,
        memory_bytes=int(memory),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        torch_version=torch.__version__,
    )


def _host_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def device_peaks(device: torch.device, *, refresh: bool = False) -> DevicePeaks:
    """Cached peaks of ``device``, measuring them the first time (or when ``refresh``)."""
    path = _cache_path(device_name(device))
    if path.is_file() and not refresh:
        try:
            data = json.loads(path.read_text())
            if data.get("torch_version") == torch.__version__:
                return DevicePeaks(**data)
        except (ValueError, TypeError):
            pass
    peaks = measure_peaks(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(peaks.to_dict(), indent=1))
    return peaks


def mfu(flops: float, seconds: float, peaks: DevicePeaks, precision: str) -> float | None:
    """Model FLOPs utilization: achieved FLOP/s over the measured matmul ceiling."""
    peak = peaks.peak(precision)
    if not peak or seconds <= 0:
        return None
    return flops / seconds / peak
