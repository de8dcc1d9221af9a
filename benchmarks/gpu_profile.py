"""Where the time goes on the GPU, and what the profiler costs (issue #8).

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_profile.py --model sd15'

1. `diffprof device`: measured bf16/fp16 matmul peaks and copy bandwidth (the MFU ceiling).
2. Profiler overhead, interleaved call by call (so machine drift hits every level alike):
   the eager engine and the `fast` engine at levels off / minimal / standard, plus `detailed` once.
3. The `fast` engine: per-component GPU times, UNet-step MFU, and the top CUDA kernels of one call
   (torch.profiler around a graph replay).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

PROMPT = "a photo of an astronaut riding a horse on mars"
SETTINGS = {"sd15": (512, 50), "sdxl": (1024, 30)}


def interleaved(engine, kwargs, levels, rounds):
    from diffprof.profiler import Profiler

    profilers = {lvl: Profiler(lvl, device="cuda", measure_overhead=False) for lvl in levels}
    times = {lvl: [] for lvl in levels}
    for lvl in levels:  # warm every level once
        engine.set_profiler(profilers[lvl])
        engine.generate(**kwargs)
    for _ in range(rounds):
        for lvl in levels:
            engine.set_profiler(profilers[lvl])
            profilers[lvl].reset()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            engine.generate(**kwargs)
            times[lvl].append(time.perf_counter() - t0)
    base = statistics.median(times["off"])
    out = {}
    for lvl in levels:
        med = statistics.median(times[lvl])
        paired = statistics.median(t / b for t, b in zip(times[lvl], times["off"]))
        out[lvl] = (med, 100 * (paired - 1))
    return base, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd15", choices=sorted(SETTINGS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-eager", action="store_true")
    args = parser.parse_args()
    size, steps = SETTINGS[args.model]

    from diffprof.device import device_peaks, mfu
    from diffprof.engine import Engine
    from diffprof.flops import pipeline_flops
    from diffprof.profiler import Profiler

    peaks = device_peaks(torch.device("cuda"))
    print(f"{peaks.name}: " + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in peaks.matmul_flops.items()) + f", copy {peaks.copy_bytes_per_s / 1e9:.0f} GB/s")
    kwargs = dict(prompt=PROMPT, steps=steps, width=size, height=size, scheduler="euler", guidance=7.5, seed=0)
    levels = ["off", "minimal", "standard"]
    for name, optimize in (("eager", []), ("fast", ["fast"])):
        if name == "eager" and args.skip_eager:
            continue
        engine = Engine.load(args.model, "synthetic", device="cuda", precision="fp16", optimize=optimize, profiler=Profiler("off", device="cuda"))
        t0 = time.perf_counter()
        engine.generate(**kwargs)
        print(f"\n== {name}: first call {time.perf_counter() - t0:.1f} s (compile cache {engine.load_info.compile_cache})")
        base, res = interleaved(engine, kwargs, levels, args.rounds)
        for lvl, (med, pct) in res.items():
            print(f"  level {lvl:9s} {med * 1e3:8.1f} ms/call   overhead vs off {pct:+6.2f}%  (median of {args.rounds} paired ratios)")
        det = Profiler("detailed", device="cuda", measure_overhead=False, trace_dir="/tmp/traces")
        engine.set_profiler(det)
        t0 = time.perf_counter()
        engine.generate(**kwargs)
        print(f"  level detailed  {1e3 * (time.perf_counter() - t0):8.1f} ms/call (one call, kernel trace capture + export)")
        # components, MFU
        engine.set_profiler(Profiler("standard", device="cuda", measure_overhead=False))
        r = engine.generate(**kwargs)
        t = r.timing
        fl = pipeline_flops(engine.base, width=size, height=size, batch=1, guidance=True)
        step = t.step_median_s
        print(f"  components (GPU): text {t.text_encode_s * 1e3:.1f} ms, loop {t.denoise_s * 1e3:.1f} ms ({t.n_steps} steps, {step * 1e3:.2f} ms/step), "
              f"VAE decode {t.vae_decode_s * 1e3:.1f} ms, whole call {t.total_s * 1e3:.1f} ms, path {r.settings.get('fast_path', 'pipeline')}")
        m = mfu(fl.unet_per_eval, step, peaks, "fp16")
        print(f"  UNet step: {fl.unet_per_eval / 1e12:.3f} TFLOP per step (batch 2 CFG) -> {fl.unet_per_eval / step / 1e12:.0f} TFLOP/s, "
              f"MFU {100 * m:.1f}% of measured fp16 peak (step includes scheduler + CFG math)")
        if name == "fast":
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                engine.generate(**kwargs)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=70))
        engine.close()
        del engine
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
