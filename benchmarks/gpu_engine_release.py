"""Does dropping a suite worker's engine give its GPU memory back? (one cell per switch set)

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_engine_release.py'

Runs one tiny-sd cell per switch set through the serial executor's EngineCache, drops the engine
as the next cell with another engine would, and prints whether the UNet is still alive and how much
device memory stays allocated. A memory suite's peaks are only honest if this is zero.
"""

from __future__ import annotations

import gc
import sys
import weakref

import torch

from diffprof.config import RunConfig
from diffprof.suites.base import expand
from diffprof.suites.worker import EngineCache, run_cell_inline


def referrer_chain(obj: object, depth: int = 6) -> list[str]:
    """Types of one path of referrers, for a leak's diagnosis."""
    out = []
    for _ in range(depth):
        refs = [r for r in gc.get_referrers(obj) if not isinstance(r, type(sys._getframe())) and r is not out]
        if not refs:
            break
        obj = refs[0]
        out.append(type(obj).__name__ + (f"{list(obj)[:5]}" if isinstance(obj, dict) else ""))
    return out


def main() -> None:
    for switches in (["cuda_graph"], ["fast_loop"], ["fast"]):
        cfg = RunConfig.from_mapping(dict(model="tiny-sd", steps=3, width=64, height=64, repeats=1, warmup=1, report=None, scheduler="euler",
                                          suites=["memory"], memory_optimizations=["none"], optimize=switches, device="cuda"))
        torch.cuda.synchronize()
        gc.collect()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        cache = EngineCache()
        result = run_cell_inline(expand(cfg)[0], cache)
        ref = weakref.ref(cache.engine.base.unet)
        during = torch.cuda.memory_allocated()
        cache.drop()
        gc.collect()
        torch.cuda.empty_cache()
        after = torch.cuda.memory_allocated()
        print(f"{'+'.join(switches):12s} status {result.status:6s} fast_path {result.settings.get('fast_path')}: allocated before {before / 2**20:.1f} MiB,"
              f" with engine {during / 2**20:.1f}, after drop {after / 2**20:.1f}; UNet alive after drop: {ref() is not None}", flush=True)
        if ref() is not None:
            print("   held by:", " <- ".join(referrer_chain(ref())))


if __name__ == "__main__":
    main()
