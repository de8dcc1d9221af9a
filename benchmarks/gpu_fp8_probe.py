"""What float8 does to one UNet step: speed, compile time and error against fp16 (issue #8).

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_fp8_probe.py --model sdxl'

One UNet call on the benchmark's shapes (batch 2 = the guidance pair), synthetic weights, timed with
CUDA events (median of --iters), for: fp16 eager, fp16 compiled (diffprof's compile options), and
torchao float8 dynamic quantization of the large linear layers (per-tensor scales on the fp16 UNet;
per-row scales on a bf16 copy), eager and compiled. The relative error of each output is against
the fp16 eager output of the same inputs. Every stage prints when it ends, and a stack dump of the
main thread lands in $OUT/fp8-stacks.txt every 60 s, so a compile that does not finish still says
where it spends its time.
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import os
import statistics
import time
from typing import Any

import torch

SHAPES = {"sd15": (512, 768), "sdxl": (1024, 2048)}


def inputs(model: str) -> dict[str, Any]:
    size, ctx = SHAPES[model]
    g = torch.Generator("cuda").manual_seed(0)
    kw: dict[str, Any] = dict(
        sample=torch.randn(2, 4, size // 8, size // 8, device="cuda", generator=g),
        timestep=torch.tensor(500.0, device="cuda"),
        encoder_hidden_states=torch.randn(2, 77, ctx, device="cuda", generator=g),
    )
    if model == "sdxl":
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 1280, device="cuda", generator=g),
                                   "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, device="cuda", dtype=torch.float32)}
    return kw


def cast(kw: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kw.items():
        if isinstance(v, dict):
            out[k] = cast(v, dtype)
        elif torch.is_tensor(v) and v.is_floating_point() and k != "timestep":
            out[k] = v.to(dtype)
        else:
            out[k] = v
    return out


def run(name: str, unet: Any, kw: dict[str, Any], ref: torch.Tensor | None, iters: int) -> torch.Tensor:
    with torch.inference_mode():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = unet(**kw, return_dict=False)[0]
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        for _ in range(2):
            unet(**kw, return_dict=False)
        times = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            unet(**kw, return_dict=False)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    err = float((out.float() - ref.float()).norm() / ref.float().norm()) if ref is not None else 0.0
    print(f"{name:38s} first {first:7.1f} s   step {statistics.median(times):7.2f} ms   rel. err {err:.2e}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sdxl", choices=sorted(SHAPES))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--stages", default="eager,compile,fp8_eager,fp8_compile,bf16_fp8_eager,bf16_fp8_compile",
                        help="fp16 eager always runs (the reference); also: bf16 (a compiled bf16 UNet without fp8)")
    args = parser.parse_args()
    stages = args.stages.split(",")
    out_dir = os.environ.get("OUT", "/tmp")
    faulthandler.dump_traceback_later(60, repeat=True, file=open(os.path.join(out_dir, "fp8-stacks.txt"), "w"))

    import torch._inductor.config as inductor
    from torchao.quantization import quantize_

    from diffprof.engine.apply import compile_options
    from diffprof.engine.weights import fp8_config
    from diffprof.engine.weights import fp8_worthy as _fp8_worthy
    from diffprof.engine.switches import Optimizations
    from diffprof.models.presets import get_preset
    from diffprof.models.synthetic import build_pipeline

    t0 = time.perf_counter()
    pipe = build_pipeline(get_preset(args.model), device="cuda", dtype=torch.float16, seed=0)
    base = pipe.unet.eval()
    base.fuse_qkv_projections()
    base.to(memory_format=torch.channels_last)
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · {args.model} UNet built in {time.perf_counter() - t0:.1f} s", flush=True)
    kw = inputs(args.model)
    kw16 = cast(kw, torch.float16)
    options = compile_options(Optimizations.parse(["compile"]))
    ref = run("fp16 eager", base, kw16, None, args.iters)
    if "compile" in stages:
        run("fp16 compiled", torch.compile(base, options=options), kw16, ref, args.iters)
        torch._dynamo.reset()
    n = sum(1 for name, m in base.named_modules() if _fp8_worthy(m, name))
    for dtype, tag in ((torch.float16, "fp8"), (torch.bfloat16, "bf16_fp8")):
        if f"{tag}_eager" not in stages and f"{tag}_compile" not in stages:
            continue
        q = copy.deepcopy(base).to(dtype)
        t0 = time.perf_counter()
        config = fp8_config(dtype)
        quantize_(q, config, filter_fn=_fp8_worthy)
        print(f"{tag}: quantized {n} linear layers ({type(config.granularity).__name__}) in {time.perf_counter() - t0:.1f} s; "
              f"global coordinate-descent tuning: {inductor.coordinate_descent_tuning}", flush=True)
        kwq = cast(kw, dtype)
        if f"{tag}_eager" in stages:
            run(f"{tag} eager", q, kwq, ref, args.iters)
        if f"{tag}_compile" in stages:
            run(f"{tag} compiled", torch.compile(q, options=options), kwq, ref, args.iters)
            torch._dynamo.reset()
        del q
        torch.cuda.empty_cache()
    if "bf16" in stages:
        b = copy.deepcopy(base).to(torch.bfloat16)
        run("bf16 compiled (no fp8)", torch.compile(b, options=options), cast(kw, torch.bfloat16), ref, args.iters)
    faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main()
