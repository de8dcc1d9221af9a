"""Sweep scaling across the GPUs of one host (issue #7): the same 16-cell sweep run serially and with
``--executor local`` (one worker per visible GPU), in one invocation; prints both wall times, their
ratio (target <= 0.6x on 2 GPUs) and a markdown line for docs/benchmarks.md.

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_scale.py'     # lent 2-GPU machine

The sweep: synthetic SD1.5 (full-size, random weights), fp16, 512 px, 8 schedulers at 40 steps plus
8 step counts (20-55), 1 warm-up + 3 repeats per cell: about 4-5 s a cell on an H100 (~26 ms a
step with guidance), about 80 s serially, about 2.5 min for the whole script. Cells must be this
long for the ratio to mean something: each local worker first pays ~5-8 s of start-up (imports,
CUDA context, model build), which on 2 GPUs alone costs ~0.1 of the ratio at this size. Every cell
shares one engine key, so serial loads the model once and each local worker once. Both runs start
in this already-imported process, so the local run's extra cost is what a user pays: worker
processes importing torch and diffusers and building the model on their card.

Checks printed beside the times: both runs hold the same cells, all ok; per-cell s/call of the local
run against the serial one (cards measured side by side must not slow each other, or the sweep's
numbers would be wrong however fast it ran); when each worker began its first cell (start-up cost).
``--model tiny-sd --weights auto --device cpu --precision fp32 --size 32 --steps 2 --threads 1 --workers 2``
runs the same script on a CPU machine (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from diffprof.config import RunConfig
from diffprof.errors import DiffprofError
from diffprof.store import Store
from diffprof.suites.base import Cell
from diffprof.suites.executors.base import Listener, Results
from diffprof.suites.executors.local import LocalExecutor
from diffprof.suites.runner import Runner, RunSummary

SCHEDULERS = ["ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "unipc", "deis"]  # one UNet call per step
STEP_COUNTS = [20, 25, 30, 35, 40, 45, 50, 55]


class StartTimes(Listener):
    """Passes events on to the runner's display and notes when each worker began its first cell."""

    def __init__(self, inner: Listener, t0: float) -> None:
        self.inner, self.t0 = inner, t0
        self.first: dict[str, float] = {}

    def workers(self, names: Sequence[str]) -> None:
        self.inner.workers(names)

    def started(self, worker: str, cell: Cell) -> None:
        self.first.setdefault(worker, time.perf_counter() - self.t0)
        self.inner.started(worker, cell)

    def idle(self, worker: str) -> None:
        self.inner.idle(worker)

    def lost(self, worker: str, cell: Cell | None, reason: str, retry: bool) -> None:
        self.inner.lost(worker, cell, reason, retry)


class TimedLocal(LocalExecutor):
    """The local executor, noting worker start-up times."""

    def execute(self, cells: Sequence[Cell], listener: Listener) -> Results:
        self.times = StartTimes(listener, time.perf_counter())
        yield from super().execute(cells, self.times)


def sweep_config(args: argparse.Namespace, db: str, executor: str) -> RunConfig:
    return RunConfig.from_mapping(
        {
            "model": args.model, "weights": args.weights, "device": args.device, "precision": args.precision,
            "suites": ["schedulers", "steps"], "schedulers": SCHEDULERS, "step_counts": STEP_COUNTS, "steps": args.steps,
            "width": args.size, "height": args.size, "repeats": args.repeats, "warmup": args.warmup,
            "db": db, "report": None, "threads": args.threads, "executor": executor, "workers": args.workers if executor != "serial" else None,
        }
    )  # fmt: skip


def run(config: RunConfig, store: Store, executor: LocalExecutor | None = None) -> tuple[RunSummary, float]:
    t0 = time.perf_counter()
    summary = Runner(config, store, command=" ".join(sys.argv), progress=False, executor=executor).run()
    return summary, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--weights", default="synthetic")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40, help="steps of the schedulers cells")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: one per visible GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (1 for the CPU smoke test)")
    parser.add_argument("--ray", action="store_true", help="also run the sweep with --executor ray (a local Ray cluster), if Ray is installed")
    parser.add_argument("--db", default=None, help="results store (default: a temporary file; $OUT/gpu_scale.db when $OUT is set)")
    args = parser.parse_args()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    db = args.db or str((out or Path(tempfile.mkdtemp(prefix="gpu-scale-"))) / "gpu_scale.db")
    Path(db).unlink(missing_ok=True)

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if args.device.startswith("cuda") else []
    hardware = f"{len(gpus)}x {gpus[0]}" if gpus and len(set(gpus)) == 1 else (", ".join(gpus) or f"CPU ({os.cpu_count()} cores)")
    print(f"hardware: {hardware}; torch {torch.__version__}", flush=True)
    if args.device.startswith("cuda") and len(gpus) < 2:
        print("warning: fewer than 2 GPUs visible; the local run cannot be faster than serial", flush=True)

    with Store(db) as store:
        # 1. Serial, in this process.
        serial_cfg = sweep_config(args, db, "serial")
        serial, serial_s = run(serial_cfg, store)
        print(f"serial: {serial.ok} ok, {serial.failed} failed in {serial_s:.1f} s", flush=True)
        # 2. Local, one worker per GPU (or --workers on CPU).
        local_cfg = sweep_config(args, db, "local")
        executor = TimedLocal(local_cfg)
        local, local_s = run(local_cfg, store, executor)
        n = len(executor.slots)
        print(f"local ({n} workers: {', '.join(s.name for s in executor.slots)}): {local.ok} ok, {local.failed} failed in {local_s:.1f} s", flush=True)
        starts = ", ".join(f"{w} {t:.1f} s" for w, t in sorted(executor.times.first.items()))
        print(f"first cell began after: {starts}", flush=True)
        # 3. Optionally Ray, one actor per GPU (it starts and stops a local cluster).
        ray_s = None
        if args.ray:
            try:
                ray_run, ray_s = run(sweep_config(args, db, "ray"), store)
                print(f"ray: {ray_run.ok} ok, {ray_run.failed} failed in {ray_s:.1f} s ({ray_s / serial_s:.2f}x serial)", flush=True)
            except DiffprofError as exc:  # Ray not installed, or no cluster
                print(f"ray: skipped ({exc})", flush=True)

    # 4. Checks: same cells, all ok; per-cell times side by side against serial.
    by_key = {c.key: c for c in serial.cells}
    same = sorted(by_key) == sorted(c.key for c in local.cells)
    ratios = [c.metrics["s_per_call"] / by_key[c.key].metrics["s_per_call"] for c in local.cells if c.ok and c.key in by_key and by_key[c.key].ok]
    per_cell = f"per-cell s/call local/serial: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}" if ratios else "no comparable cells"
    cell_s = statistics.median(c.metrics.get("s_per_call", float("nan")) * (args.repeats + args.warmup) for c in serial.cells if c.ok) if serial.ok else float("nan")
    ratio = local_s / serial_s
    print(f"same cells: {same}; all ok: {serial.failed == 0 and local.failed == 0}; {per_cell}")
    print(f"wall time local/serial: {ratio:.2f}x (ideal {1 / max(1, n):.2f}x, target <= 0.6x on 2 GPUs)")
    for c in [*serial.cells, *local.cells]:
        if not c.ok:
            print(f"  failed {c.suite} {c.label}: {c.error}")

    settings = (
        f"{len(serial.cells)} cells ({len(SCHEDULERS)} schedulers at {args.steps} steps + {len(STEP_COUNTS)} step counts), {args.model} "
        f"{args.weights} {args.precision} {args.size} px, {args.warmup} warm-up + {args.repeats} repeats (~{cell_s:.1f} s a cell)"
    )
    line = (
        f"| {time.strftime('%Y-%m-%d')} | {hardware} | sweep scaling: {settings} | serial {serial_s:.1f} s | "
        f"local, {n} workers {local_s:.1f} s | **{ratio:.2f}x** (ideal {1 / max(1, n):.2f}x) | {per_cell}; first cells began after {starts} |"
    )
    print("\nmarkdown for docs/benchmarks.md:\n" + line)
    if out is not None:
        result: dict[str, Any] = {
            "hardware": hardware, "serial_s": serial_s, "local_s": local_s, "ratio": ratio, "workers": n, "same_cells": same,
            "failed": serial.failed + local.failed, "per_cell_ratio": ratios, "first_cell_after_s": executor.times.first, "ray_s": ray_s,
            "markdown": line,
        }  # fmt: skip
        (out / "gpu_scale.json").write_text(json.dumps(result, indent=2))
    return 0 if same and serial.failed == 0 and local.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
