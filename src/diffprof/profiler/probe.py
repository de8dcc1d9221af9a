"""A speed probe: one fixed piece of work timed beside every round, so a comparison can tell a slower
machine from slower code.

On a shared machine the speed a process gets drifts in ways no load counter shows: on the 2-core CI
host, identical `bench` processes a few seconds apart ran tiny-sd 15-40% apart with no other process
taking CPU time (a neighbour on the hypervisor, the core the process landed on; issue 17). Drift
between processes is what a regression gate confuses with a regression, and more rounds in one
process cannot average it out. The probe measures it: a fixed matmul + convolution (CPU, on the
threads the cell runs with) or a fixed bf16 matmul (CUDA, timed with CUDA events) around each round,
its median kept as the round's ``probe_s``. ``compare`` divides each round's time by its probe when
both runs were taken in the same environment (``analysis.evidence``): code that got slower moves
the time and not the probe; a machine that got slower moves both.

The probe's work is fixed for a release (:data:`PROBE_VERSION`): probes of different versions are
never compared.
"""

from __future__ import annotations

import statistics
import time

import torch

#: Bumped whenever the probe's work changes, so probes of different work are never compared.
PROBE_VERSION = 1
#: Timings per probe; the median is kept (one preempted timing does not move it).
REPEATS = 7


def _cpu_work() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.nn.Conv2d]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(160, 160, generator=g)
    b = torch.randn(160, 160, generator=g)
    x = torch.randn(1, 16, 32, 32, generator=g)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    return a, b, x, conv


def _time_cpu(iterations: int = 8) -> float:
    a, b, x, conv = _cpu_work()
    samples = []
    with torch.inference_mode():
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for _ in range(iterations):
                torch.mm(a, b)
                conv(x)
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _time_cuda(device: torch.device, iterations: int = 10) -> float:
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(2048, 2048, generator=g, device=device, dtype=torch.bfloat16)
    b = torch.randn(2048, 2048, generator=g, device=device, dtype=torch.bfloat16)
    samples = []
    with torch.inference_mode():
        torch.mm(a, b)  # first launch: cuBLAS handle and heuristics, outside the timing
        for _ in range(REPEATS):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iterations):
                torch.mm(a, b)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
    return statistics.median(samples)


def speed_probe(device: torch.device | str = "cpu") -> float:
    """Seconds the probe's fixed work takes on ``device`` now (the median of :data:`REPEATS`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _time_cuda(device)
    return _time_cpu()
