"""Cost of each CUDA tracker primitive (µs per call): where the `standard` level's time goes.

    python3 benchmarks/cuda_tracker_costs.py     # on a CUDA machine
"""

from __future__ import annotations

import time

import torch


def per_call_us(fn, n: int = 2000) -> float:
    for _ in range(100):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    dev = torch.device("cuda", 0)
    x = torch.empty(1 << 20, device=dev)
    ev = torch.cuda.Event(enable_timing=True)
    raw = getattr(torch._C, "_cuda_memoryStats", None)
    rows = {
        "Event.record()": lambda: ev.record(),
        "torch.cuda.Event(enable_timing=True)": lambda: torch.cuda.Event(enable_timing=True),
        "torch.cuda.memory_stats()": lambda: torch.cuda.memory_stats(0),
        "torch._C._cuda_memoryStats()": (lambda: raw(0)) if raw else None,
        "torch.cuda.memory_allocated()": lambda: torch.cuda.memory_allocated(0),
        "torch.cuda.reset_peak_memory_stats()": lambda: torch.cuda.reset_peak_memory_stats(0),
        "torch.cuda.nvtx.range_push/pop": lambda: (torch.cuda.nvtx.range_push("x"), torch.cuda.nvtx.range_pop()),
        "small kernel launch (x.add_(1))": lambda x=x: x.add_(1),
    }
    for name, fn in rows.items():
        if fn is not None:
            print(f"{name:40s} {per_call_us(fn):8.2f} µs")
    del x


if __name__ == "__main__":
    main()
