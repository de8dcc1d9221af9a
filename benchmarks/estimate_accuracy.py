"""Accuracy of `diffprof estimate`: calibrate on <= 6 points, predict held-out workloads, measure them.

    python benchmarks/estimate_accuracy.py                                  # tiny-sd, CPU, 1 thread
    python benchmarks/estimate_accuracy.py --model sd15 --weights synthetic --device cuda --precision fp16
    python benchmarks/estimate_accuracy.py --model sdxl --weights synthetic --device cuda --precision fp16
    python benchmarks/estimate_accuracy.py --model flux-dev --weights synthetic --device cuda --precision bf16 \
        --sizes 512,768,1024 --quick --time-target 0.15 --memory-target 0.10 --doc docs/benchmarks.md      # issue 21 (gpu_dit_all.sh)

1. Calibrate: the `calibration` suite (3 sizes x 2 batches, 4 steps), stored as a normal run, exactly
   what `diffprof calibrate` records.
2. Predict 8 held-out workloads (other sizes, aspect ratios, batches and step counts; inside the
   calibrated size and batch range) with `Estimator.from_store`.
3. Measure them (stored as a `generation` run) and print a markdown table of predicted vs measured.

Time is one call on a loaded pipeline (`s_per_call`, median of the repeats); load time is measured by
the calibration, not modelled, so it is left out of the comparison. Peak memory is
`peak_allocated_bytes` on CUDA. On a CPU it is the process's peak resident set (`host_peak_rss_bytes`):
the Python/torch runtime, the weights and the activations. The runtime is most of it for a tiny
model, so the CPU table also compares the *growth* of the peak over the smallest calibration point
(its 0.5x native size, batch 1 measured again beside the held-out cells): both sides are differences
of like measurements, so the constant runtime and weights cancel and only the part that depends on
the workload is judged. On a CPU every cell runs in a fresh process (`--isolate`, default there), so
no cell's peak carries an earlier, larger cell's memory; on CUDA the allocator's peak is reset per call.

glibc and RSS: by default glibc raises its mmap threshold each time a large block is freed, so later
blocks come from the heap and stay resident after they are freed; RSS growth then follows the history
of allocations more than the live bytes (tiny-sd at 192 px, batch 1: +24 MiB of RSS for 7 MiB of
activations, at 128 px batch 4 +30 MiB for 12 MiB). ``--mmap-threshold 65536`` fixes the threshold
for the cell processes: freed blocks go back to the system and RSS growth follows the live tensor
bytes the model traces, at the price of a fresh, zero-filled mapping per large tensor (calls run
about 2x slower, so time is best judged without it).

``--sizes`` calibrates on those square sizes instead of the plan's 0.5x-1.5x native; ``--quick`` measures
:data:`HELD_OUT_QUICK` (five workloads of at most 6 steps, inside the calibrated sizes) instead of the
eight of :data:`HELD_OUT`: what fits a FLUX.1-dev check into a few minutes of a GPU.

Other schedulers and tasks (`--variants`): a second table of held-out workloads that run a
scheduler other than the calibrated one (Heun, DPM2: about two denoiser calls per step; Euler) or
img2img / inpaint at a strength below 1, predicted from the same calibration with `estimate
--scheduler/--task/--strength` (denoiser calls counted from the scheduler's timesteps, the VAE encode
modelled from the decoder's fit) and measured the same way. With `--doc` that table also goes into the page's
`estimate-variants` section.

Exit code 1 when a median absolute error exceeds --target (default 25%; ``--time-target`` and
``--memory-target`` set each on its own).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffprof.config import RunConfig
from diffprof.estimate import Estimate, Estimator
from diffprof.results import CellResult
from diffprof.store import Store
from diffprof.suites.base import Cell
from diffprof.suites.calibration import plan
from diffprof.suites.runner import Runner
from diffprof.units import fmt_bytes, fmt_seconds

#: Held-out workloads: (width, height) as fractions of the native size, batch, steps.
HELD_OUT: tuple[tuple[float, float, int, int], ...] = (
    (0.75, 0.75, 2, 10),
    (1.25, 1.25, 1, 8),
    (1.0, 1.0, 3, 12),
    (1.5, 1.0, 2, 6),
    (0.625, 0.625, 4, 20),
    (1.375, 1.375, 3, 5),
    (1.125, 1.125, 2, 15),
    (0.875, 1.5, 1, 25),
)
#: ``--quick``: fewer, shorter held-out workloads (fractions of the largest calibrated size).
HELD_OUT_QUICK: tuple[tuple[float, float, int, int], ...] = (
    (0.625, 0.625, 1, 6),
    (0.875, 0.875, 1, 5),
    (0.75, 1.0, 1, 4),
    (0.8125, 0.8125, 2, 4),
    (1.0, 0.5625, 2, 6),
)


#: Held-out workloads of another scheduler or task: (width, height) as fractions of native, batch, steps, scheduler, task, strength.
VARIANTS: tuple[tuple[float, float, int, int, str, str, float], ...] = (
    (1.0, 1.0, 1, 10, "heun", "txt2img", 1.0),
    (0.75, 0.75, 2, 12, "dpm2", "txt2img", 1.0),
    (1.25, 1.25, 1, 16, "euler", "txt2img", 1.0),
    (1.0, 1.0, 2, 20, "default", "img2img", 0.5),
    (1.25, 1.25, 1, 16, "euler", "img2img", 0.75),
    (1.0, 1.0, 1, 20, "default", "inpaint", 0.75),
    (0.75, 0.75, 2, 12, "heun", "inpaint", 0.6),
)


@dataclass
class Row:
    label: str
    predicted: Estimate
    measured_s: float
    measured_peak: float
    growth_measured: float | None = None
    growth_predicted: float | None = None

    @property
    def time_error(self) -> float:
        return self.predicted.call_s / self.measured_s - 1

    @property
    def peak_error(self) -> float:
        return self.predicted.peak_bytes / self.measured_peak - 1

    @property
    def growth_error(self) -> float | None:
        if self.growth_measured is None or self.growth_predicted is None or self.growth_measured <= 0:
            return None
        return self.growth_predicted / self.growth_measured - 1


class CellsRunner(Runner):
    """A Runner over a fixed list of cells (the held-out workloads) instead of the config's suites."""

    def __init__(self, cells: list[Cell], *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._cells = cells

    def cells(self, config: RunConfig | None = None) -> list[Cell]:
        return self._cells


def snap(value: float, model: str = "tiny-sd") -> int:
    """A side near ``value`` the model takes (multiples of 8; of 16 for FLUX and SD3, 32 for SANA)."""
    from diffprof.engine.model_facts import model_facts

    return model_facts(model).round_size(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps of the calibration calls")
    parser.add_argument("--repeats", type=int, default=3, help="measured calls per cell")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the calibration plan's sizes (and the held-out sizes) by this; e.g. 2 for tiny-sd on a CPU, "
                             "whose activations at 32-96 px (1-4 MiB) are below what RSS resolves")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="a fresh process per cell (default: on for CPU, off for CUDA)")
    parser.add_argument("--mmap-threshold", default="default",
                        help="CPU: glibc MALLOC_MMAP_THRESHOLD_ for the measured processes, e.g. 65536 (RSS then follows live "
                             "tensor bytes, but every large tensor is a fresh mmap: ~2x slower calls); default: glibc's own")
    parser.add_argument("--db", default=None, help="results store (default: a temporary file)")
    parser.add_argument("--target", type=float, default=0.25, help="largest acceptable median absolute error")
    parser.add_argument("--time-target", type=float, default=None, help="for time (default --target)")
    parser.add_argument("--memory-target", type=float, default=None, help="for peak memory (default --target)")
    parser.add_argument("--sizes", default=None, help="calibrate on these square sizes (comma-separated) instead of the plan's")
    parser.add_argument("--quick", action="store_true", help="five short held-out workloads (HELD_OUT_QUICK) instead of eight")
    parser.add_argument("--doc", metavar="PAGE.md", help="also write the table into this page's estimate-MODEL section")
    parser.add_argument("--force", action="store_true", help="skip the up-front memory check of each cell (a GPU known to hold them)")
    parser.add_argument("--variants", action="store_true", help="also held-out workloads of other schedulers and of img2img / inpaint")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    threads = args.threads if args.threads is not None else (None if cuda else 1)
    if threads:
        torch.set_num_threads(threads)
    isolate = (not cuda) if args.isolate is None else args.isolate
    if not cuda and args.mmap_threshold != "default":
        if not isolate:
            parser.error("--mmap-threshold needs --isolate: glibc reads it when a process starts")
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(int(args.mmap_threshold))  # read by each fresh cell process
    db = args.db or str(Path(tempfile.mkdtemp(prefix="diffprof-estimate-")) / "estimate.db")
    base = {"model": args.model, "weights": args.weights, "device": args.device, "precision": args.precision, "threads": threads,
            "repeats": args.repeats, "warmup": 1, "isolate": isolate, "db": db, "report": None, "force": args.force}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()

    # 1. Calibrate (what `diffprof calibrate` does).
    store = Store(db)
    calibration = RunConfig.from_mapping({**base, "suites": ["calibration"], "steps": args.steps})
    if args.sizes:
        calibration = RunConfig.from_mapping({"resolutions": [f"{snap(int(v), args.model)}x{snap(int(v), args.model)}" for v in args.sizes.split(",")]},
                                             base=calibration)
    if args.scale != 1.0:
        sizes = sorted({(w, h) for w, h, _ in plan(calibration)})
        resolutions = [f"{snap(w * args.scale, args.model)}x{snap(h * args.scale, args.model)}" for w, h in sizes]
        calibration = RunConfig.from_mapping({"resolutions": resolutions}, base=calibration)
    summary = Runner(calibration, store, command="benchmarks/estimate_accuracy.py (calibration)", progress=False).run()
    if summary.ok < 3:
        print(f"calibration failed: {summary.ok} cell(s) ok", file=sys.stderr)
        return 2
    estimator = Estimator.from_store(store, model=args.model, device=args.device, precision=None if args.precision == "auto" else args.precision,
                                     run=summary.run_id)
    native = estimator.model.architecture.native_size
    smallest = min(estimator.model.points, key=lambda p: (p.workload.pixels * p.workload.batch))
    # HELD_OUT is written for a plan of 0.5x-1.5x native, batches 1-4; scale it into the plan actually run
    # (HELD_OUT_QUICK: fractions of the largest calibrated side).
    largest = max(max(p.workload.width, p.workload.height) for p in estimator.model.points)
    scale = largest / native if args.quick else largest / (1.5 * native)
    max_batch = estimator.model.batch_range[1]

    # 2. Held-out workloads (and the smallest calibration point again, as the CPU growth reference).
    held_out = HELD_OUT_QUICK if args.quick else HELD_OUT
    workloads = [(snap(fw * native * scale, args.model), snap(fh * native * scale, args.model), min(b, max_batch), s) for fw, fh, b, s in held_out]
    reference = (smallest.workload.width, smallest.workload.height, smallest.workload.batch, args.steps)
    cells = []
    for w, h, b, s in [*workloads, reference]:
        config = RunConfig.from_mapping({**base, "suites": ["generation"], "width": w, "height": h, "batch": b, "steps": s})
        cells.append(Cell("generation", {"width": w, "height": h, "batch": b, "steps": s}, config))
    held = CellsRunner(cells, RunConfig.from_mapping({**base, "suites": ["generation"]}), store,
                       command="benchmarks/estimate_accuracy.py (held-out)", progress=False).run()
    measured = {(c.labels["width"], c.labels["height"], c.labels["batch"], c.labels["steps"]): c for c in held.cells}
    metric = "peak_allocated_bytes" if cuda else "host_peak_rss_bytes"

    # 3. Compare.
    ref_cell = measured.get(reference)
    ref_pred = estimator.predict(reference[0], reference[1], reference[3], reference[2])
    rows: list[Row] = []
    for w, h, b, s in workloads:
        cell: CellResult | None = measured.get((w, h, b, s))
        if cell is None or not cell.ok:
            print(f"held-out {w}x{h} b{b} {s} steps failed: {cell.error if cell else 'missing'}", file=sys.stderr)
            continue
        e = estimator.predict(w, h, s, b)
        row = Row(f"{w}x{h}, batch {b}, {s} steps", e, cell.metrics["s_per_call"], cell.metrics[metric])
        if not cuda and ref_cell is not None and ref_cell.ok:
            row.growth_measured = cell.metrics[metric] - ref_cell.metrics[metric]
            row.growth_predicted = e.peak_bytes - ref_pred.peak_bytes
        rows.append(row)
    variant_errors: list[float] = []
    if args.variants:
        variant_errors = variants(args, estimator, base, native, scale, max_batch, store)
    load1 = os.getloadavg()[0]
    if not rows:
        print("no held-out workload was measured", file=sys.stderr)
        return 2
    lines: list[str] = []
    print_report(args, estimator, rows, cuda, isolate, threads, load0, load1, time.perf_counter() - t0, summary.run_id, held.run_id, out=lines)
    time_mae = statistics.median(abs(r.time_error) for r in rows)
    memory_errors = [abs(r.peak_error) for r in rows] if cuda else [abs(g) for r in rows if (g := r.growth_error) is not None]
    time_target = args.time_target if args.time_target is not None else args.target
    memory_target = args.memory_target if args.memory_target is not None else args.target
    ok_time = time_mae <= time_target
    ok_memory = bool(memory_errors) and statistics.median(memory_errors) <= memory_target
    verdict = (f"- targets: time median error {time_mae:.1%} (within {time_target:.0%}: {'met' if ok_time else 'NOT met'}); peak memory median "
               f"error {statistics.median(memory_errors) if memory_errors else float('nan'):.1%} (within {memory_target:.0%}: {'met' if ok_memory else 'NOT met'})")
    print(verdict)
    lines.append(verdict)
    if args.doc:
        from diffprof.report.sections import provenance, write_section

        command = "python3 " + " ".join(["benchmarks/estimate_accuracy.py", *sys.argv[1:]])
        write_section(args.doc, f"estimate-{args.model}", "\n".join([provenance(command), "", *lines]) + "\n")
    return 0 if ok_time and ok_memory else 1


def variants(args: argparse.Namespace, est: Estimator, base: dict, native: int, scale: float, max_batch: int, store: Store) -> list[float]:
    """Measure and predict :data:`VARIANTS`; print (and with --doc write) their table; the time errors."""
    import shlex

    work = [(snap(fw * native * scale, args.model), snap(fh * native * scale, args.model), min(b, max_batch), n, sched, task, strength)
            for fw, fh, b, n, sched, task, strength in VARIANTS]
    cells = []
    for w, h, b, n, sched, task, strength in work:
        config = RunConfig.from_mapping({**base, "suites": ["generation"], "width": w, "height": h, "batch": b, "steps": n, "scheduler": sched,
                                         "task": task, "strength": strength})
        cells.append(Cell("generation", {"width": w, "height": h, "batch": b, "steps": n, "scheduler": sched, "task": task, "strength": strength}, config))
    held = CellsRunner(cells, RunConfig.from_mapping({**base, "suites": ["generation"]}), store,
                       command="benchmarks/estimate_accuracy.py (variants)", progress=False).run()
    lines = [f"`python3 benchmarks/estimate_accuracy.py {shlex.join(sys.argv[1:])}`: the same calibration (run {est.model.calibration.run_id}, "
             f"{est.key.describe()}, its default scheduler, txt2img) predicting other schedulers and tasks (held-out run {held.run_id}; load average "
             f"{os.getloadavg()[0]:.1f}).", "",
             "| held-out workload | denoiser calls | time measured | time predicted (95% interval) | error | VAE encode measured | predicted |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    errors = []
    for cell, (w, h, b, n, sched, task, strength) in zip(held.cells, work):
        if not cell.ok:
            lines.append(f"| {w}x{h}, batch {b}, {n} steps, {sched}, {task} | failed: {cell.error} |")
            continue
        e = est.predict(w, h, n, b, scheduler=sched, task=task, strength=strength)
        err = e.call_s / cell.metrics["s_per_call"] - 1
        errors.append(err)
        encode = next((c for c in e.components if c.name == "vae_encode"), None)
        calls = e.component("denoise").detail.split()[0]
        lines.append(f"| {e.workload.label} | {calls} (measured {int(cell.metrics.get('unet_evals', 0))}) | {fmt_seconds(cell.metrics['s_per_call'])} | "
                     f"{fmt_seconds(e.call_s)} ({fmt_seconds(e.call_interval.low)}–{fmt_seconds(e.call_interval.high)}) | {err:+.1%}"
                     + ("" if e.call_interval.contains(cell.metrics["s_per_call"]) else " *") + " | "
                     + (fmt_seconds(cell.metrics["vae_encode_s"]) if "vae_encode_s" in cell.metrics else "-") + " | "
                     + (fmt_seconds(encode.seconds) if encode else "-") + " |")
    if errors:
        lines += ["", f"Time: median absolute error {statistics.median(abs(x) for x in errors):.1%}, max {max(abs(x) for x in errors):.1%}. "
                  "`*`: outside the 95% interval. Denoiser calls: predicted from the scheduler's timesteps and the strength; "
                  "measured: the cell's `unet_evals` (denoiser forwards per call)."]
    text = "\n".join(lines)
    print(text + "\n")
    if args.doc:
        from diffprof.report.sections import write_section

        write_section(args.doc, "estimate-variants" + ("" if args.device == "cpu" else f"-{args.model}"), text)
    return errors


def print_report(args: argparse.Namespace, est: Estimator, rows: list[Row], cuda: bool, isolate: bool, threads: int | None,
                 load0: float, load1: float, seconds: float, cal_run: int, held_run: int, out: list[str] | None = None) -> None:
    """Print the markdown report (and append its lines to ``out``)."""
    import builtins

    def print(*parts: object) -> None:  # noqa: A001 - every line of the report, kept for --doc as well
        text = " ".join(str(p) for p in parts)
        builtins.print(text)
        if out is not None:
            out.extend(text.split("\n"))

    key = est.key
    env = est.model.calibration.environment
    points = ", ".join(p.label for p in est.model.points)
    print(f"### {key.model} ({args.weights} weights) on {key.device}, {key.precision}: calibrated on {len(est.model.points)} points\n")
    malloc = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    allocator = "" if cuda else (f"; glibc MALLOC_MMAP_THRESHOLD_={malloc}" if malloc else "; glibc's default (dynamic) mmap threshold")
    print(f"- machine: {env}; torch threads {threads or torch.get_num_threads()}; "
          f"load average {load0:.1f} at start, {load1:.1f} at end; {'a fresh process per cell' if isolate else 'one process'}{allocator}")
    scaled = f" (the default plan's sizes x {args.scale:g})" if args.scale != 1.0 else ""
    print(f"- calibration (run {cal_run}): {points}{scaled}, {args.steps} steps, {args.repeats} repeats; held-out cells: run {held_run}; "
          f"{seconds:.0f} s in all")
    s = est.model.summary()
    def part(name: str, overhead: str) -> str:
        d = s[name]
        combine = "+" if d["overlap"] == 1 else f"(+, overlap k={d['overlap']:g})"
        return (f"{fmt_seconds(d[overhead])} {combine} FLOPs at {(d['tflops'] or 0) * 1e3:.3g} GFLOP/s "
                f"(residual {d['residual']:.1%})")

    print(f"- fitted: step = {part('step', 'per_step_s')}; VAE = {part('vae_decode', 'per_decoder_call_s')} (per decoder call)"
          + (f"; peak = {fmt_bytes(s['memory']['baseline_bytes'])} + weights + {s['memory']['activation_factor']:.2f} x traced "
             f"activations (residual {s['memory']['residual']:.1%})" if "memory" in s else ""))
    print()
    peak_name = "peak allocated" if cuda else "peak RSS"
    header = ["held-out workload", "time measured", "time predicted (95% interval)", "error",
              f"{peak_name} measured", f"{peak_name} predicted (95% interval)", "error"]
    if not cuda:
        header += ["RSS growth measured", "growth predicted", "error"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        e = r.predicted
        cells = [
            r.label,
            fmt_seconds(r.measured_s),
            f"{fmt_seconds(e.call_s)} ({fmt_seconds(e.call_interval.low)}–{fmt_seconds(e.call_interval.high)})",
            f"{r.time_error:+.1%}" + ("" if e.call_interval.contains(r.measured_s) else " *"),
            fmt_bytes(r.measured_peak),
            f"{fmt_bytes(e.peak_bytes)} ({fmt_bytes(e.peak_interval.low)}–{fmt_bytes(e.peak_interval.high)})",
            f"{r.peak_error:+.1%}" + ("" if e.peak_interval.contains(r.measured_peak) else " *"),
        ]
        if not cuda:
            ge = r.growth_error
            cells += [fmt_bytes(r.growth_measured), fmt_bytes(r.growth_predicted), "-" if ge is None else f"{ge:+.1%}"]
        print("| " + " | ".join(cells) + " |")
    print()
    times = [abs(r.time_error) for r in rows]
    peaks = [abs(r.peak_error) for r in rows]
    time_in = sum(r.predicted.call_interval.contains(r.measured_s) for r in rows)
    peak_in = sum(r.predicted.peak_interval.contains(r.measured_peak) for r in rows)
    print(f"- time: median absolute error {statistics.median(times):.1%}, max {max(times):.1%}; "
          f"{time_in}/{len(rows)} measurements inside the 95% interval")
    print(f"- {peak_name}: median absolute error {statistics.median(peaks):.1%}, max {max(peaks):.1%}; "
          f"{peak_in}/{len(rows)} inside the 95% interval")
    growth = [abs(g) for r in rows if (g := r.growth_error) is not None]
    if growth:
        print(f"- RSS growth over the smallest calibration point: median absolute error {statistics.median(growth):.1%}, "
              f"max {max(growth):.1%}")
    print("- `*`: the measurement fell outside the prediction interval")


if __name__ == "__main__":
    raise SystemExit(main())
