"""What a `detailed` profile leaves behind: kernel-launch cost before and after one kernel capture.

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_cupti_teardown.py [--model sd15]'

Kineto keeps CUPTI attached after a torch.profiler session unless TEARDOWN_CUPTI=1, and attached it
taxes every later kernel launch. diffprof leaves Kineto's default (with the teardown, a capture that
starts soon after another records no kernels: tests/test_profiler.py) and flags every later timing
in the process instead. Each setting runs in its own process (CUPTI's state is per process):

* ``Kineto default``: TEARDOWN_CUPTI unset, CUPTI left attached (what diffprof runs with);
* ``TEARDOWN_CUPTI=1``: CUPTI detached when the capture ends.

Each process times a launch-bound loop (tiny in-place adds, µs per launch, median of 5 batches) and,
with ``--model``, the eager pipeline at level ``off`` (median of 3 calls), before and after one
`detailed` call. The ratio after/before is what every later measurement in that process pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPT = "a photo of an astronaut riding a horse on mars"
SETTINGS = {"sd15": (512, 50), "sdxl": (1024, 30)}


def launch_us(n: int = 5000) -> float:
    import torch

    x = torch.zeros(1, device="cuda")
    batches = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1)
        torch.cuda.synchronize()
        batches.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(batches)


def child(model: str | None) -> dict[str, float | str | None]:
    import torch

    from diffprof.profiler import Profiler

    out: dict[str, float | str | None] = {}
    engine = kwargs = None
    if model:
        from diffprof.engine import Engine

        size, steps = SETTINGS[model]
        engine = Engine.load(model, "synthetic", device="cuda", precision="fp16", profiler=Profiler("off", device="cuda"))
        kwargs = dict(prompt=PROMPT, steps=steps, width=size, height=size, scheduler="euler", guidance=7.5, seed=0)
        engine.generate(**kwargs)

    def call_s() -> float:
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            engine.generate(**kwargs)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    launch_us()  # warm
    out["launch_us_before"] = launch_us()
    if engine is not None:
        out["call_s_before"] = call_s()
    detailed = Profiler("detailed", device="cuda", measure_overhead=False, trace_dir="/tmp/cupti-traces")
    if engine is not None:
        engine.set_profiler(detailed)
        engine.generate(**kwargs)
        engine.set_profiler(Profiler("off", device="cuda"))
    else:
        with detailed.profile_operation("capture", "gpu"):
            launch_us(500)
    detailed.profile()
    time.sleep(1.0)  # Kineto tears CUPTI down on its own thread
    out["launch_us_after"] = launch_us()
    if engine is not None:
        out["call_s_after"] = call_s()
    out["TEARDOWN_CUPTI"] = os.environ.get("TEARDOWN_CUPTI")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(SETTINGS), help="also time the eager pipeline before and after")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.model)), flush=True)
        return
    import torch

    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} (CUDA {torch.version.cuda})")
    cmd = [sys.executable, __file__, "--child"] + (["--model", args.model] if args.model else [])
    for label, value in (("Kineto default", None), ("TEARDOWN_CUPTI=1", "1")):
        env = {k: v for k, v in os.environ.items() if k != "TEARDOWN_CUPTI"}
        if value is not None:
            env["TEARDOWN_CUPTI"] = value
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{label}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        text = (f"{label:18s} (TEARDOWN_CUPTI={r['TEARDOWN_CUPTI']}): launch {r['launch_us_before']:.2f} -> {r['launch_us_after']:.2f} µs "
                f"({r['launch_us_after'] / r['launch_us_before']:.2f}x)")
        if "call_s_before" in r:
            text += f"; {args.model} eager call {r['call_s_before']:.3f} -> {r['call_s_after']:.3f} s ({r['call_s_after'] / r['call_s_before']:.2f}x)"
        print(text, flush=True)


if __name__ == "__main__":
    main()
