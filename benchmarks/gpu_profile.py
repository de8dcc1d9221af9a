"""Where the time goes on the GPU, and what the profiler costs (issue #8).

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_profile.py --model sd15'

1. `diffprof device`: measured bf16/fp16 matmul peaks and copy bandwidth (the MFU ceiling).
2. Profiler overhead, interleaved call by call (so machine drift hits every level alike; the order
   rotates each round, so a drift within a round does not land on one level):
   the eager engine and the `fast` engine at levels off / minimal / standard, plus `detailed` once.
   Each level gets the median paired ratio with its 95% bootstrap interval, and its own cost: the
   measured per-operation cost times the operations a call records (what drift cannot blur).
3. Both engines: per-component GPU times and UNet-step MFU; the `fast` engine's top CUDA kernels of
   one call (torch.profiler around a graph replay). Kernel captures run after every timing: one
   leaves CUPTI attached for the rest of the process, which slows later launches.
With `--doc docs/benchmarks.md` the figures also go into that page's `profile-MODEL` section, under a
line naming the command, date, GPU and versions.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

PROMPT = "a photo of an astronaut riding a horse on mars"
SETTINGS = {"sd15": (512, 50), "sdxl": (1024, 30)}


def paired_overhead(times: list[float], base: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Median of the paired ratios time/base, as a % overhead, with a 95% bootstrap interval.

    The interval says whether a figure is the profiler or the machine: the eager pipeline is
    launch-bound and drifts by several % call to call, so a median alone can read +3% or -4%.
    """
    ratios = np.asarray(times) / np.asarray(base)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(ratios, size=(10_000, ratios.size), replace=True), axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return 100 * (float(np.median(ratios)) - 1), 100 * (lo - 1), 100 * (hi - 1)


def interleaved(engine, kwargs, levels, rounds):
    """Per level: (median s/call, overhead %, its 95% interval low/high, operations per call)."""
    from diffprof.profiler import Profiler

    profilers = {lvl: Profiler(lvl, device="cuda", measure_overhead=False) for lvl in levels}
    times = {lvl: [] for lvl in levels}
    ops = {lvl: 0 for lvl in levels}
    for lvl in levels:  # warm every level once
        engine.set_profiler(profilers[lvl])
        engine.generate(**kwargs)
    for r in range(rounds):
        # rotate the order each round: a drift along the round (the third call of every round
        # slower, say) would otherwise read as the cost of whichever level always runs third
        for lvl in levels[r % len(levels):] + levels[:r % len(levels)]:
            engine.set_profiler(profilers[lvl])
            profilers[lvl].reset()
            # a garbage collection landing inside one call costs ms in a launch-bound loop: collect
            # before each call and hold the collector off while it runs, for every level alike
            gc.collect()
            gc.disable()
            try:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                engine.generate(**kwargs)
                times[lvl].append(time.perf_counter() - t0)
            finally:
                gc.enable()
            ops[lvl] = len(profilers[lvl].records)
    out = {}
    for lvl in levels:
        pct, lo, hi = paired_overhead(times[lvl], times["off"])
        out[lvl] = (statistics.median(times[lvl]), pct, lo, hi, ops[lvl])
    return out


def accounted(level: str, ops: int, call_s: float) -> float:
    """The profiler's own cost as a % of a call: its measured per-operation cost (an empty
    operation, timed in a tight loop on this GPU) times the operations one call records. Free of the
    machine's call-to-call drift, it bounds what the paired wall-time figure can honestly claim."""
    from diffprof.profiler import measure_overhead

    return 100 * measure_overhead(level, "cuda") * 1e-9 * ops / call_s


def kernel_shares(prof: Any, top: int) -> list[tuple[str, float, int]]:
    """(kernel name, share of all GPU time, calls) for the ``top`` kernels of a CUDA-only trace."""
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    total = sum(e.device_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    return [(e.key, e.device_time_total / total, e.count) for e in events[:top]]


def markdown(found: dict[str, Any], command: str) -> str:
    """Overhead, components, MFU and top kernels as one page section."""
    from diffprof.report.markdown import pipe_table
    from diffprof.report.sections import provenance

    paths = found["paths"]
    def cell(lv: dict[str, float]) -> str:
        return f"{lv['pct']:+.2f}% [{lv['lo']:+.2f}, {lv['hi']:+.2f}]"

    overhead = [[name, f"{r['first_call_s']:.1f}", f"{r['levels']['off']['median_s'] * 1e3:.1f}",
                 cell(r["levels"]["minimal"]), f"{r['levels']['minimal']['accounted']:.3f}%",
                 cell(r["levels"]["standard"]), f"{r['levels']['standard']['accounted']:.3f}%",
                 f"{r['detailed_s'] * 1e3:.0f} ms" if "detailed_s" in r else "-"] for name, r in paths.items()]
    components = []
    for name, r in paths.items():
        c = r["components"]
        components.append([name, f"{c['text_ms']:.1f}", f"{c['loop_ms']:.1f}", f"{c['step_ms']:.2f}", f"{c['vae_ms']:.1f}", f"{c['total_ms']:.1f}",
                           f"{r['tflop_per_step']:.3f}", f"{r['tflops']:.0f}", f"**{100 * r['mfu']:.1f}%**"])
    lines = [provenance(command), "", f"Measured peaks of this card: {found['peaks']}.", "",
             *pipe_table(["path", "first call s", "level off ms/call", "minimal: wall [95%]", "minimal: own cost", "standard: wall [95%]",
                          "standard: own cost", "detailed (one call)"], overhead, [False] + [True] * 7),
             "", f"Wall: the median of {found['rounds']} paired ratios against level `off` (the levels interleaved call by call, "
             "in an order that rotates each round, garbage collected before each call), with its 95% bootstrap interval. "
             "Own cost: the profiler's measured cost per operation on this GPU times the operations one call records, "
             "as a share of the call; free of the call-to-call drift that widens the wall interval.", "",
             *pipe_table(["path", "text encoder ms", "denoising loop ms", "ms/step", "VAE decode ms", "whole call ms", "UNet TFLOP/step (CFG batch 2)",
                          "TFLOP/s", "MFU of fp16 peak"], components, [False] + [True] * 8)]
    if found.get("kernels"):
        kernels = [[f"`{(name if len(name) <= 90 else name[:87] + '...').replace('|', '/')}`", f"{100 * share:.1f}%", str(calls)]
                   for name, share, calls in found["kernels"]]
        lines += ["", "Top CUDA kernels of one `fast` call (torch.profiler, share of all GPU time):", "",
                  *pipe_table(["kernel", "share", "calls"], kernels, [False, True, True])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd15", choices=sorted(SETTINGS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-eager", action="store_true")
    parser.add_argument("--doc", metavar="PAGE.md", help="also write the figures into this markdown page (section profile-MODEL)")
    args = parser.parse_args()
    command = "python3 " + shlex.join(["benchmarks/gpu_profile.py", *sys.argv[1:]])
    found: dict[str, Any] = {"paths": {}, "rounds": args.rounds}
    size, steps = SETTINGS[args.model]

    from diffprof.device import device_peaks, mfu
    from diffprof.engine import Engine
    from diffprof.flops import pipeline_flops
    from diffprof.profiler import Profiler

    peaks = device_peaks(torch.device("cuda"))
    found["peaks"] = ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in peaks.matmul_flops.items()) + f", copy {peaks.copy_bytes_per_s / 1e9:,.0f} GB/s"
    print(f"{peaks.name}: {found['peaks']}")
    kwargs = dict(prompt=PROMPT, steps=steps, width=size, height=size, scheduler="euler", guidance=7.5, seed=0)
    levels = ["off", "minimal", "standard"]

    def write() -> None:
        if args.doc:
            from diffprof.report.sections import write_section

            write_section(args.doc, f"profile-{args.model}", markdown(found, command))

    # Every timing first, every kernel capture last: a capture leaves CUPTI attached for the rest of
    # the process (Kineto's default), which made the next eager call ~1.6x slower (H100).
    engines: dict[str, Any] = {}
    for name, optimize in (("eager", []), ("fast", ["fast"])):
        if name == "eager" and args.skip_eager:
            continue
        engine = engines[name] = Engine.load(args.model, "synthetic", device="cuda", precision="fp16", optimize=optimize, profiler=Profiler("off", device="cuda"))
        t0 = time.perf_counter()
        engine.generate(**kwargs)
        first = time.perf_counter() - t0
        print(f"\n== {name}: first call {first:.1f} s (compile cache {engine.load_info.compile_cache})")
        res = interleaved(engine, kwargs, levels, args.rounds)
        off_s = res["off"][0]
        path = found["paths"][name] = {"first_call_s": first, "levels": {}}
        for lvl, (med, pct, lo, hi, ops) in res.items():
            own = accounted(lvl, ops, off_s) if lvl != "off" else 0.0
            path["levels"][lvl] = dict(median_s=med, pct=pct, lo=lo, hi=hi, ops=ops, accounted=own)
            print(f"  level {lvl:9s} {med * 1e3:8.1f} ms/call   wall overhead vs off {pct:+6.2f}% [95%: {lo:+.2f}, {hi:+.2f}] "
                  f"(median of {args.rounds} paired ratios)   own cost {own:.3f}% ({ops} operations/call)")
        # components, MFU
        engine.set_profiler(Profiler("standard", device="cuda", measure_overhead=False))
        r = engine.generate(**kwargs)
        t = r.timing
        fl = pipeline_flops(engine.base, width=size, height=size, batch=1, guidance=True)
        step = t.step_median_s
        print(f"  components (GPU): text {t.text_encode_s * 1e3:.1f} ms, loop {t.denoise_s * 1e3:.1f} ms ({t.n_steps} steps, {step * 1e3:.2f} ms/step), "
              f"VAE decode {t.vae_decode_s * 1e3:.1f} ms, whole call {t.total_s * 1e3:.1f} ms, path {r.settings.get('fast_path', 'pipeline')}")
        m = mfu(fl.unet_per_eval, step, peaks, "fp16")
        path["components"] = dict(text_ms=t.text_encode_s * 1e3, loop_ms=t.denoise_s * 1e3, step_ms=step * 1e3, vae_ms=t.vae_decode_s * 1e3, total_ms=t.total_s * 1e3)
        path.update(tflop_per_step=fl.unet_per_eval / 1e12, tflops=fl.unet_per_eval / step / 1e12, mfu=m)
        print(f"  UNet step: {fl.unet_per_eval / 1e12:.3f} TFLOP per step (batch 2 CFG) -> {fl.unet_per_eval / step / 1e12:.0f} TFLOP/s, "
              f"MFU {100 * m:.1f}% of measured fp16 peak (step includes scheduler + CFG math)")
        write()  # after each path: a later failure loses nothing
    for name, engine in engines.items():
        path = found["paths"][name]
        det = Profiler("detailed", device="cuda", measure_overhead=False, trace_dir="/tmp/traces")
        engine.set_profiler(det)
        t0 = time.perf_counter()
        engine.generate(**kwargs)
        path["detailed_s"] = time.perf_counter() - t0
        print(f"  {name}: level detailed {1e3 * path['detailed_s']:8.1f} ms/call (one call, kernel trace capture + export)")
        if name == "fast":
            engine.set_profiler(Profiler("off", device="cuda"))
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                engine.generate(**kwargs)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=70))
            found["kernels"] = kernel_shares(prof, 12)
    for engine in engines.values():
        engine.close()
    engines.clear()
    torch.cuda.empty_cache()
    write()


if __name__ == "__main__":
    main()
