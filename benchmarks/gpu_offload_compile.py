"""Why is a compiled UNet slower per step under model CPU offload? (SDXL memory suite with -O fast)

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_offload_compile.py --model sd15'

Loads the model with model_cpu_offload, eager and then compiled (channels_last + fused QKV, as the
memory suite's cell), times the steps of a few generations, and prints what Dynamo counted:
graph breaks, recompilations and frames compiled, so the step's extra time can be attributed.
"""

from __future__ import annotations

import argparse
import collections
import statistics

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    from torch._dynamo.utils import counters

    from diffprof.engine import Engine

    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    for switches in (["model_cpu_offload"], ["model_cpu_offload", "channels_last", "fuse_qkv", "compile=unet+vae"],
                     ["channels_last", "fuse_qkv", "compile=unet+vae"]):
        counters.clear()
        engine = Engine.load(args.model, "synthetic", device="cuda", precision="fp16", optimize=switches)
        kw = dict(prompt="a photo of an astronaut", steps=args.steps, scheduler="euler", guidance=7.5, seed=0)
        for _ in range(2):
            engine.generate(**kw)
        frames = dict(counters["stats"])
        runs = [engine.generate(**kw) for _ in range(3)]
        step = statistics.median(r.timing.step_median_s for r in runs)
        total = statistics.median(r.timing.total_s for r in runs)
        breaks = collections.Counter({k: sum(v.values()) if isinstance(v, dict) else v for k, v in counters["graph_break"].items()})
        print(f"{'+'.join(switches):60s} step {step * 1e3:7.1f} ms  total {total:6.2f} s  dynamo stats after warm-up {frames}"
              f"  recompiles {dict(counters['recompiles']) if 'recompiles' in counters else {}}  frames in the timed calls {dict(counters['stats'])}")
        for reason, n in breaks.most_common(5):
            print(f"    graph break x{n}: {reason[:200]}")
        # Does the compiled code run? Inductor's kernels are named triton_*; eager runs none.
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            engine.generate(**{**kw, "steps": 2})
        names = [e.key for e in prof.key_averages()]
        print(f"    kernels in a 2-step call: {len(names)} distinct, {sum(n.startswith('triton_') for n in names)} of them inductor's (triton_*)")
        engine.close()
        del engine
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
