"""Peak memory and time per memory option on a diffusion transformer (issue 21: FLUX.1-dev), one process.

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_dit_memory.py --doc docs/benchmarks.md'
    python benchmarks/gpu_dit_memory.py --model tiny-flux --device cpu --size 64 --steps 2 --options none,layerwise_casting,int8_weights

Each option loads its own engine (synthetic weights from the same seed, drawn on the GPU even when an
offload keeps them in host memory, so every option runs the same weights), warms up once and times
``--repeats`` calls of ``--steps`` steps (8: peak memory does not depend on the step count, and time is
shown per step too; sequential offload streams all 12 B transformer weights over PCIe for every step,
so it runs ``--slow-steps`` steps, 2, and ``none`` is measured at that count as well). For each:
the GPU allocator's peak during the timed calls, the call and per-step time, and what it costs
against ``none`` on the same call (same prompt and seed): relative L2 error of the final latents and
PSNR of the image (inf: identical). After every option the table so far goes to stdout, $OUT and
(``--doc``) the page's ``dit-memory-MODEL`` section.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_dit import GUIDANCE, clean, image_psnr, latent_error, load_engine, markdown, request  # noqa: E402

#: The issue's options, in table order: none, model offload, group offload (block level, CUDA streams),
#: float8 weight storage, sequential offload; then the others diffprof has for big models.
OPTIONS = ("none", "model_cpu_offload", "group_offload", "layerwise_casting", "sequential_cpu_offload",
           "group_offload=leaf", "t5_offload", "int8_weights", "vae_tiling")
SLOW = ("sequential_cpu_offload",)


def measure(model: str, device: torch.device, precision: str, option: str, size: int, step_counts: list[int], repeats: int) -> list[dict[str, Any]]:
    """One engine with ``option``, timed at each of ``step_counts``: a row per count."""
    engine = load_engine(model, device, precision, [] if option == "none" else option.split("+"))
    rows = []
    try:
        for steps in step_counts:
            kw = request(model, size, steps)
            t0 = time.perf_counter()
            engine.generate(**kw)  # warm-up (lazy init, pinned buffers, allocator growth)
            first = time.perf_counter() - t0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            results = [engine.generate(**kw) for _ in range(repeats)]
            t = [r.timing for r in results]
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
            reserved = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else 0
            last = results[-1]
            rows.append({"option": option, "steps": steps, "call_s": statistics.median(x.total_s for x in t),
                         "step_s": statistics.median(x.step_median_s for x in t), "text_s": statistics.median(x.text_encode_s for x in t),
                         "vae_s": statistics.median(x.vae_decode_s for x in t), "peak_bytes": peak, "reserved_bytes": reserved, "first_call_s": first,
                         "load_s": engine.load_info.seconds, "switches": engine.optimizations.label,
                         "latents": last.latents.float().cpu() if last.latents is not None else None, "image": last.images[0] if last.images else None})
        return rows
    finally:
        engine.close()
        clean(device)


def table(rows: list[dict[str, Any]], refs: dict[int, dict[str, Any]]) -> list[str]:
    lines = [f"{'option':24s} {'steps':>5s} {'peak GiB':>9s} {'reserved':>9s} {'s/call':>8s} {'ms/step':>8s} {'vs none':>8s} {'latent err':>10s} "
             f"{'PSNR dB':>8s} {'load s':>7s}"]
    for r in rows:
        ref = refs.get(r["steps"])
        per_step_ratio = r["step_s"] / ref["step_s"] if ref and ref["step_s"] else float("nan")
        err = latent_error(r["latents"], ref["latents"]) if ref else float("nan")
        db = image_psnr(r["image"], ref["image"]) if ref else float("nan")
        r.update(latent_rel_err=err, psnr_db=db, step_vs_none=per_step_ratio)
        lines.append(f"{r['option']:24s} {r['steps']:5d} {r['peak_bytes'] / 2**30:9.2f} {r['reserved_bytes'] / 2**30:9.2f} {r['call_s']:8.2f} "
                     f"{r['step_s'] * 1e3:8.1f} {per_step_ratio:7.2f}x {err:10.2e} {db:8.2f} {r['load_s']:7.1f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8, help="steps per call (peak memory does not depend on them; time per step is shown)")
    parser.add_argument("--slow-steps", type=int, default=2, help="steps for sequential offload (and its none reference)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--options", default=",".join(OPTIONS[:5]), help=f"comma-separated memory options (default: the issue's five; all: {','.join(OPTIONS)})")
    parser.add_argument("--doc", metavar="PAGE.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    command = "python3 " + shlex.join(["benchmarks/gpu_dit_memory.py", *sys.argv[1:]])
    options = [o for o in args.options.split(",") if o]
    slow = [o for o in options if o in SLOW]
    plan = [("none", [args.steps] + ([args.slow_steps] if slow and args.slow_steps != args.steps else []))]
    plan += [(o, [args.slow_steps if o in SLOW else args.steps]) for o in options if o != "none"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name} · {args.model} {args.size}x{args.size}, guidance {GUIDANCE.get(args.model, 3.5)}, {args.precision}, synthetic weights", flush=True)
    rows: list[dict[str, Any]] = []
    refs: dict[int, dict[str, Any]] = {}
    for option, steps in plan:
        t0 = time.perf_counter()
        try:
            measured = measure(args.model, device, args.precision, option, args.size, steps, args.repeats)
        except Exception as exc:  # noqa: BLE001 - one option failing must not lose the others
            print(f"{option}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            clean(device)
            continue
        for row in measured:
            if option == "none":
                refs[row["steps"]] = row
            rows.append(row)
            print(f"{option} ({row['steps']} steps): {row['call_s']:.2f} s per call, peak {row['peak_bytes'] / 2**30:.2f} GiB "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        lines = [f"{args.model} {args.size}x{args.size}, guidance {GUIDANCE.get(args.model, 3.5)}, batch 1, {args.precision}, synthetic weights; "
                 f"{args.repeats} timed call(s) after one warm-up; peak = the GPU allocator's during the timed calls; error and PSNR "
                 "against none at the same steps and seed"
                 + (f"; {', '.join(slow)} at {args.slow_steps} steps (it streams every transformer weight for every step)" if slow else ""),
                 *table(rows, refs)]
        print("\n".join(lines), flush=True)
        if os.environ.get("OUT"):
            import json

            with open(os.path.join(os.environ["OUT"], f"dit-memory-{args.model}.json"), "w") as fh:
                json.dump([{k: v for k, v in r.items() if k not in ("latents", "image")} for r in rows], fh, indent=1, default=str)
        if args.doc:
            from diffprof.report.sections import write_section

            write_section(args.doc, f"dit-memory-{args.model}", markdown(args.model, lines, command))
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
