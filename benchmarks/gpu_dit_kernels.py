"""Where a `fast` FLUX / SD3 step spends its GPU time, kernel by kernel, against each part's FLOPs (issue 21).

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_dit_kernels.py --model flux-dev'
    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_dit_kernels.py --model flux-dev --variants row,tensor'

`fast` on FLUX.1-dev reached 1.79x over diffusers eager on an H200, against flux-fast's 2.5x on an H100.
This says why, and how far each part of a step is from what the GPU can do: one engine call per
variant under torch.profiler (CUDA activity: every kernel, those replayed from the loop's CUDA graph
included), each kernel's device time summed into GEMMs (fp8 or bf16), attention, inductor's fused
(triton) kernels and the rest, per denoising step; next to it the meta-device FLOP count of one
transformer evaluation split into matmuls and attention, so each part's achieved TFLOP/s reads against
the GPU's dense peak. A variant is ``fast`` with fp8 at per-row scales (``row``, what ``fast`` runs on
bf16) or per-tensor scales (``tensor``, flux-fast's default: one scale per tensor, cheaper GEMM epilogue),
or ``lossless`` (fast without fp8). Each variant: load, one warm-up call (compiles, captures), --repeats
timed calls (synchronized wall), one profiled call, its latent error against the first variant's.
Rows print as they finish and land in $OUT/dit-kernels-MODEL.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections import defaultdict
from typing import Any

import torch

PROMPT = "a photo of an astronaut riding a horse on mars"
GUIDANCE = {"flux-dev": 3.5, "flux-schnell": 0.0, "sd35-large": 3.5, "sd35-medium": 4.5}
#: dense peaks (TFLOP/s) of the H100/H200 SXM: bf16 and fp8 tensor cores (NVIDIA's data sheet, no sparsity)
PEAK = {"bf16": 989.0, "fp8": 1979.0}


def kind_of(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("sdpa", "flash", "fmha", "attention", "attn")):
        return "attention"
    if any(k in n for k in ("e4m3", "f8f8", "fp8", "float8", "rowwise", "scaled_mm")):
        return "gemm fp8"
    if any(k in n for k in ("gemm", "nvjet", "xmma", "cutlass", "cublas", "matmul", "sm90_")):
        return "gemm bf16"
    if n.startswith("triton"):
        return "triton (fused)"
    return "other"


def flop_split(engine: Any, size: int, guidance: bool) -> dict[str, float]:
    """Meta-device FLOPs of one transformer evaluation: the linear layers' matmuls and attention."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffprof.flops import meta_copy
    from diffprof.flops.inputs import denoiser_inputs, denoiser_kind, vae_scale

    pipe = engine.base
    model = getattr(pipe, "transformer", None) or pipe.unet
    kind = denoiser_kind(getattr(model, "_orig_mod", model))
    scale = vae_scale(pipe.vae)
    meta = meta_copy(model)
    args, kwargs = denoiser_inputs(kind, meta, pipe, batch=1, guidance=guidance, latent_h=size // scale, latent_w=size // scale)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(*args, **kwargs)
    out: dict[str, float] = defaultdict(float)
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        # on the meta device SDPA decomposes into its math form, whose two bmm are the attention FLOPs;
        # the linear layers are addmm/mm
        out["attention" if "scaled_dot_product" in str(op) or "bmm" in str(op) else "matmul"] += n
    return dict(out)


def device_time_us(event: Any) -> float:
    for attr in ("device_time", "cuda_time"):
        if hasattr(event, attr):
            return float(getattr(event, attr))
    return 0.0


def profile_call(engine: Any, kw: dict[str, Any]) -> tuple[dict[str, float], list[tuple[str, float, int]], float]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine.generate(**kw)
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    by_kind: dict[str, float] = defaultdict(float)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CUDA") and device_time_us(e) > 0:
            us = device_time_us(e)
            by_kind[kind_of(e.name)] += us
            by_name[e.name][0] += us
            by_name[e.name][1] += 1
    top = sorted(((n, v[0], int(v[1])) for n, v in by_name.items()), key=lambda r: -r[1])[:15]
    return dict(by_kind), top, wall


def run_variant(model: str, variant: str, size: int, steps: int, repeats: int) -> dict[str, Any]:
    from diffprof.engine import Engine, weights
    from diffprof.engine.model_facts import model_facts
    from diffprof.engine.switches import expand_fast, runs_on
    from diffprof.profiler import Profiler

    device = torch.device("cuda")
    switches = expand_fast(["fast"], model_facts(model).denoiser, runs_on(device, "bf16"))
    original = weights.fp8_config
    if variant == "lossless":
        switches = [s for s in switches if s != "fp8"]
    elif variant == "tensor":
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerTensor

        weights.fp8_config = lambda dtype: Float8DynamicActivationFloat8WeightConfig(granularity=PerTensor(), set_inductor_config=False)  # type: ignore[assignment]
    try:
        engine = Engine.load(model, "synthetic", device=device, precision="bf16", optimize=switches,
                             profiler=Profiler("off", device=device, measure_overhead=False))
        kw = dict(prompt=PROMPT, steps=steps, width=size, height=size, guidance=GUIDANCE.get(model, 3.5), seed=0)
        t0 = time.perf_counter()
        engine.generate(**kw)
        first = time.perf_counter() - t0
        walls = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            result = engine.generate(**kw)
            torch.cuda.synchronize()
            walls.append(time.perf_counter() - t0)
        by_kind, top, prof_wall = profile_call(engine, kw)
        flops = flop_split(engine, size, guidance=GUIDANCE.get(model, 3.5) > 1 and model.startswith("sd"))
        out = {"variant": variant, "switches": engine.optimizations.label, "first_call_s": first, "wall_s": statistics.median(walls),
               "walls_s": walls, "profiled_wall_s": prof_wall, "kernel_us": by_kind, "top": top, "flops_per_eval": flops,
               "latents": result.latents.float().cpu() if result.latents is not None else None}
        engine.close()
        del engine
    finally:
        weights.fp8_config = original  # type: ignore[assignment]
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()
    return out


def report(row: dict[str, Any], steps: int, evals_per_step: int, ref: Any) -> list[str]:
    us = row["kernel_us"]
    total = sum(us.values())
    fl = row["flops_per_eval"]
    lines = [f"== {row['variant']}: {row['switches']}",
             f"wall {row['wall_s'] * 1000:.0f} ms/call ({row['wall_s'] / steps * 1000:.1f} ms/step; calls {', '.join(f'{w:.3f}' for w in row['walls_s'])} s), "
             f"profiled call {row['profiled_wall_s'] * 1000:.0f} ms, kernels {total / 1000:.0f} ms, first call {row['first_call_s']:.0f} s"]
    if ref is not None and row["latents"] is not None:
        err = float((row["latents"] - ref).norm() / ref.norm())
        lines.append(f"latent error against the first variant: {err:.2e}")
    lines.append(f"{'part':16} {'ms/call':>9} {'ms/step':>8} {'share':>6} {'TFLOP/s':>8} {'of peak':>8}")
    for kind in ("gemm fp8", "gemm bf16", "attention", "triton (fused)", "other"):
        t = us.get(kind, 0.0)
        rate = peak = ""
        work = {"attention": fl.get("attention", 0.0)}.get(kind)
        if kind.startswith("gemm") and t and (us.get("gemm fp8", 0) == 0 or kind == "gemm fp8"):
            work = fl.get("matmul", 0.0)  # the transformer's matmuls, nearly all in the GEMMs of this precision
        if work and t:
            tflops = work * evals_per_step * steps / (t / 1e6) / 1e12
            rate = f"{tflops:8.0f}"
            p = PEAK["fp8" if kind == "gemm fp8" else "bf16"]
            peak = f"{tflops / p * 100:7.0f}%"
        lines.append(f"{kind:16} {t / 1000:9.1f} {t / 1000 / steps:8.2f} {t / total * 100 if total else 0:5.0f}% {rate:>8} {peak:>8}")
    lines.append(f"FLOPs per transformer evaluation: matmul {fl.get('matmul', 0) / 1e12:.1f} T, attention {fl.get('attention', 0) / 1e12:.1f} T "
                 f"(x{evals_per_step} per step)")
    lines.append("top kernels (ms per call, launches):")
    lines += [f"  {ms / 1000:8.1f} {n:6d}  {name[:110]}" for name, ms, n in row["top"]]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default="row,tensor", help="comma-separated: row, tensor, lossless")
    args = parser.parse_args()
    out = os.environ.get("OUT", "/tmp/out")
    os.makedirs(out, exist_ok=True)
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    evals = 1  # one transformer evaluation per step: SD3's CFG pair is one batch-2 call, counted at batch 2
    rows, ref = [], None
    for variant in args.variants.split(","):
        row = run_variant(args.model, variant, args.size, args.steps, args.repeats)
        print("\n".join(report(row, args.steps, evals, ref)), flush=True)
        if ref is None:
            ref = row["latents"]
        rows.append({k: v for k, v in row.items() if k != "latents"})
        with open(os.path.join(out, f"dit-kernels-{args.model}.json"), "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
