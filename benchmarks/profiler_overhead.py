"""Profiler cost: µs per empty operation at each level, and % overhead on a representative workload.

    python benchmarks/profiler_overhead.py            # CPU, 1 torch thread
    python benchmarks/profiler_overhead.py --device cuda

The workload is denoising-shaped: one outer operation, one operation per step (a conv + attention
block, ~1 ms on one CPU thread), text-encoding and decode operations; it is timed with no profiler
and under each level, interleaved, median of several rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from diffprof.profiler import LEVELS, Profiler, measure_overhead

TARGETS_US = {"minimal": 3.0, "standard": 20.0}  # issue #2, this CPU machine


def build(device: torch.device, width: int):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, width, 3, padding=1).to(device)
    attn = torch.nn.MultiheadAttention(width, 4, batch_first=True).to(device)
    cond = torch.randn(1, 77, width, device=device)
    latents0 = torch.randn(1, 4, 32, 32, device=device)

    def step(latents):
        h = conv(latents).flatten(2).transpose(1, 2)
        h, _ = attn(h, cond, cond)
        return latents - 0.01 * h.mean(-1).reshape(1, 1, 32, 32)

    return step, latents0


def run_workload(profiler: Profiler | None, step, latents, steps: int, device: torch.device) -> int:
    """One generation-shaped call; returns synchronized wall ns."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    if profiler is None:
        for _ in range(steps):
            latents = step(latents)
    else:
        op = profiler.profile_operation
        with op("diffusion_image_generation", "model_inference"):
            with op("text_encoding", "model_inference"):
                pass
            for i in range(steps):
                with op("denoising_step", "model_inference", step=i):
                    latents = step(latents)
            with op("vae_decode", "model_inference"):
                pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter_ns() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)

    print(f"device {device}, torch {torch.__version__}, 1 thread")
    print("\nper-operation cost (empty body, median of 5 batches):")
    per_op = {}
    for level in LEVELS:
        per_op[level] = measure_overhead(level, device) / 1e3
        target = TARGETS_US.get(level)
        verdict = "" if target is None or device.type != "cpu" else (" OK" if per_op[level] <= target else " OVER TARGET") + f" (target <= {target} µs)"
        print(f"  {level:9s} {per_op[level]:10.2f} µs/op{verdict}")

    step, latents = build(device, args.width)
    with torch.inference_mode():
        for _ in range(3):
            run_workload(None, step, latents, args.steps, device)
        times: dict[str, list[int]] = {"none": [], **{lvl: [] for lvl in LEVELS if lvl != "detailed"}}
        for _ in range(args.rounds):  # interleave so drift hits every variant alike
            times["none"].append(run_workload(None, step, latents, args.steps, device))
            for level in times:
                if level == "none":
                    continue
                profiler = Profiler(level, device=device, measure_overhead=False)
                times[level].append(run_workload(profiler, step, latents, args.steps, device))
                profiler.profile()
        detailed = Profiler("detailed", device=device, measure_overhead=False, trace_dir="diffprof-traces/overhead")
        t_detailed = run_workload(detailed, step, latents, args.steps, device)
    base = statistics.median(times["none"])
    print(f"\nworkload: {args.steps} steps, {args.steps + 3} operations per call, no profiler {base / 1e6:.2f} ms (median of {args.rounds})")
    for level, samples in times.items():
        if level == "none":
            continue
        med = statistics.median(samples)
        print(f"  {level:9s} {med / 1e6:8.2f} ms  overhead {100 * (med - base) / base:+6.2f}% measured, "
              f"{100 * per_op[level] * 1e3 * (args.steps + 3) / base:5.2f}% from per-op cost")
    print(f"  detailed  {t_detailed / 1e6:8.2f} ms (one call incl. torch.profiler start/stop and trace export): "
          f"{100 * (t_detailed - base) / base:+.0f}%")


if __name__ == "__main__":
    main()
