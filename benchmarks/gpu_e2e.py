"""End-to-end generation on the GPU: plain diffusers against diffprof, same process, same GPU.

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_e2e.py --model sd15 --variants eager,diffprof'

Variants (comma-separated):
  eager       plain diffusers fp16, SDPA, no diffprof code in the loop; latents out, then VAE decode +
              postprocess to PIL timed apart (the work of `pipe(prompt).images`, as diffprof's total)
  compile     the plain recipe: fused QKV + channels_last + torch.compile of UNet and VAE decoder
              (SD1.5 reduce-overhead, SDXL default), still plain diffusers
  diffprof    diffprof's Engine at its defaults (standard profiler, per-component records)
  levels      diffprof at each profiler level (off/minimal/standard/detailed): the profiler's cost
  fast        diffprof's `fast` preset (whole-loop CUDA graph, compile, fused QKV, channels_last, bf16 VAE)
  fast_fp8    `fast` plus float8 linear layers (torchao)
Any number of `--optimize SWITCHES` adds a diffprof variant with those switches (`-O` of the CLI),
e.g. `--optimize fast,kernel_tuning --optimize fast,fp8`. Each `--sdpa-priority ORDER` adds the first
`--optimize` variant again, loaded, compiled and run inside torch's
`sdpa_kernel(ORDER, set_priority=True)` (which SDPA kernel each attention shape gets; see
benchmarks/gpu_sdpa_backends.py), e.g. `--sdpa-priority cudnn,efficient,flash,math`.
Each variant: warm-up calls, then --repeats timed calls (synchronized wall time); median reported.
`check` compares per-step CUDA-event times against synchronized wall time. Writes JSON to $OUT, and
with `--doc docs/benchmarks.md` its table into that page's `e2e-MODEL` section (rewritten after each
variant, so a later failure loses nothing), under a line naming the command, date, GPU and versions.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import time
from typing import Any

import torch

SETTINGS = {"sd15": dict(size=512, steps=50), "sdxl": dict(size=1024, steps=30), "sd21": dict(size=768, steps=50)}
PROMPT = "a photo of an astronaut riding a horse on mars"


def sync() -> None:
    torch.cuda.synchronize()


def clean() -> None:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def plain_pipeline(model: str) -> Any:
    """A plain diffusers pipeline of the real architecture with random weights (built by diffprof,
    but what runs is diffusers alone)."""
    from diffusers import EulerDiscreteScheduler

    from diffprof.models.presets import get_preset
    from diffprof.models.synthetic import build_pipeline

    pipe = build_pipeline(get_preset(model), device="cuda", dtype=torch.float16, seed=0)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_plain(pipe: Any, size: int, steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Latents out, then VAE decode and ``postprocess`` to PIL timed apart: together the work of a
    plain ``pipe(prompt).images`` call, and the same work diffprof's ``total`` covers."""
    def call() -> torch.Tensor:
        g = torch.Generator("cpu").manual_seed(0)
        return pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.5, width=size, height=size, generator=g, output_type="latent").images

    def decode(latents: torch.Tensor) -> list[Any]:
        vae = pipe.vae
        needs_upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        z = latents / vae.config.scaling_factor
        if needs_upcast:
            image = vae.to(torch.float32).decode(z.float(), return_dict=False)[0]
        else:
            image = vae.decode(z.to(vae.dtype), return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pil")

    with torch.inference_mode():
        first = None
        for i in range(warmup):
            sync()
            t0 = time.perf_counter()
            latents = call()
            decode(latents)
            sync()
            if i == 0:
                first = time.perf_counter() - t0
        clean()
        loop, vae = [], []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            latents = call()
            sync()
            t1 = time.perf_counter()
            decode(latents)
            sync()
            loop.append(t1 - t0)
            vae.append(time.perf_counter() - t1)
        peak = torch.cuda.max_memory_allocated()
    return {"loop_s": statistics.median(loop), "vae_s": statistics.median(vae), "total_s": statistics.median(loop) + statistics.median(vae),
            "first_call_s": first, "peak_bytes": peak, "loop_samples": loop, "latents": latents.float().cpu()}


def time_engine(model: str, size: int, steps: int, warmup: int, repeats: int, level: str = "standard", optimize: list[str] | None = None) -> dict[str, Any]:
    from diffprof.engine import Engine
    from diffprof.profiler import Profiler

    profiler = Profiler(level, device="cuda", measure_overhead=False, trace_dir=os.path.join(os.environ.get("OUT", "/tmp"), f"traces-{model}"))
    engine = Engine.load(model, "synthetic", device="cuda", precision="fp16", optimize=optimize or [], profiler=profiler)
    kwargs = dict(prompt=PROMPT, steps=steps, width=size, height=size, scheduler="euler", guidance=7.5, seed=0)
    first = None
    for i in range(warmup):
        t0 = time.perf_counter()
        engine.generate(**kwargs)
        if i == 0:
            first = time.perf_counter() - t0
    profiler.reset()
    clean()
    results = [engine.generate(**kwargs) for _ in range(repeats)]
    t = [r.timing for r in results]
    out = {
        "total_s": statistics.median(x.total_s for x in t),
        "loop_s": statistics.median(x.denoise_s for x in t),
        "vae_s": statistics.median(x.vae_decode_s for x in t),
        "text_s": statistics.median(x.text_encode_s for x in t),
        "step_median_s": statistics.median(x.step_median_s for x in t),
        "first_call_s": first,
        "peak_bytes": max((x.peak_allocated or 0) for x in t) or torch.cuda.max_memory_allocated(),
        "latents": results[-1].latents.float().cpu() if results[-1].latents is not None else None,
        "records_per_call": len(results[-1].records),
    }
    engine.close()
    del engine
    torch._dynamo.reset()  # the next variant compiles its own modules, with its own options
    clean()
    return out


def time_hooked(pipe: Any, size: int, steps: int, warmup: int, repeats: int, level: str) -> dict[str, Any]:
    """The plain pipeline with diffprof's instrumentation attached (``none``: no hooks at all),
    latents out: isolates what the hooks and the profiler level cost per step."""
    from diffprof.engine.instrument import PipelineInstrumentation
    from diffprof.profiler import Profiler

    inst = None if level == "none" else PipelineInstrumentation(pipe, Profiler(level, device="cuda", measure_overhead=False))

    def call() -> None:
        g = torch.Generator("cpu").manual_seed(0)
        kw = dict(num_inference_steps=steps, guidance_scale=7.5, width=size, height=size, generator=g, output_type="latent")
        if inst is None:
            pipe(PROMPT, **kw)
        else:
            with inst.call():
                pipe(PROMPT, callback_on_step_end=inst.step_callback, **kw)

    with torch.inference_mode():
        for _ in range(warmup):
            call()
        loop = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            call()
            sync()
            loop.append(time.perf_counter() - t0)
    if inst is not None:
        inst.remove()
    return {"loop_s": statistics.median(loop), "vae_s": 0.0, "total_s": statistics.median(loop), "first_call_s": None, "peak_bytes": 0, "latents": None}


def step_event_check(model: str, size: int, steps: int) -> dict[str, Any]:
    """Per-step CUDA-event times against synchronized wall time: a callback synchronizes at every
    step end and reads the host clock, so each step's wall span is exactly its GPU work plus
    launch latency."""
    from diffprof.engine import Engine
    from diffprof.profiler import Profiler

    engine = Engine.load(model, "synthetic", device="cuda", precision="fp16", profiler=Profiler("standard", device="cuda", measure_overhead=False))
    engine.generate(prompt=PROMPT, steps=3, width=size, height=size, scheduler="euler")
    wall: list[float] = []
    inner = engine.instrumentation.step_callback

    def synced(pipe: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
        out = inner(pipe, i, t, kw)
        torch.cuda.synchronize()
        wall.append(time.perf_counter())
        return out

    engine.instrumentation.step_callback = synced  # type: ignore[method-assign]
    result = engine.generate(prompt=PROMPT, steps=steps, width=size, height=size, scheduler="euler")
    gpu = result.timing.steps_gpu_s[1:]
    walls = [b - a for a, b in zip(wall, wall[1:])]
    rel = [abs(g - w) / w for g, w in zip(gpu, walls)]
    engine.close()
    return {"median_rel_diff": statistics.median(rel), "max_rel_diff": max(rel), "gpu_step_ms": statistics.median(gpu) * 1e3, "wall_step_ms": statistics.median(walls) * 1e3}


def markdown(rows: dict[str, dict[str, Any]], steps: int, check: dict[str, Any] | None, command: str) -> str:
    """The e2e table as a page section: speedups against the eager row and the compile recipe."""
    from diffprof.report.markdown import pipe_table
    from diffprof.report.sections import provenance

    recipe = next((r for n, r in rows.items() if n.startswith("diffusers + compile")), None)

    def ratio(x: float) -> str:
        return "-" if x != x else f"{x:.2f}x"

    body = []
    for name, r in rows.items():
        vs_recipe = ratio(recipe["total_s"] / r["total_s"]) if recipe else "-"
        first = f"{r['first_call_s']:.1f}" if r.get("first_call_s") else "-"
        its = f"{steps / r['loop_s']:.1f}" if r["loop_s"] else "-"
        err = "-" if r["latent_rel_err"] != r["latent_rel_err"] else f"{r['latent_rel_err']:.2e}"
        body.append([name, f"{r['total_s']:.3f}", f"{r['loop_s']:.3f}", its, f"{r['vae_s'] * 1e3:.1f}", first,
                     f"{r['peak_bytes'] / 2**30:.2f}", ratio(r["speedup"]), vs_recipe, err])
    headers = ["variant", "total s", "loop s", "it/s", "VAE ms", "first call s", "peak GiB", "vs eager", "vs compile recipe", "latent rel. error"]
    lines = [provenance(command), "", *pipe_table(headers, body, [False] + [True] * 9)]
    if check:
        lines += ["", f"Per-step GPU time from CUDA events against synchronized wall time (diffprof default engine): median difference "
                  f"{100 * check['median_rel_diff']:.2f}%, max {100 * check['max_rel_diff']:.2f}% (step {check['gpu_step_ms']:.2f} ms GPU, "
                  f"{check['wall_step_ms']:.2f} ms wall)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd15", choices=sorted(SETTINGS))
    parser.add_argument("--variants", default="eager,diffprof")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--optimize", action="append", default=[], metavar="SWITCHES",
                        help="a further diffprof variant with these switches, e.g. fast,kernel_tuning (repeatable)")
    parser.add_argument("--sdpa-priority", action="append", default=[], metavar="ORDER",
                        help="the first --optimize variant again under this SDPA backend order, e.g. cudnn,efficient,flash,math (repeatable)")
    parser.add_argument("--doc", metavar="PAGE.md", help="also write the table into this markdown page (section --section)")
    parser.add_argument("--section", metavar="KEY", help="the --doc section's key (default e2e-MODEL)")
    args = parser.parse_args()
    command = "python3 " + shlex.join(["benchmarks/gpu_e2e.py", *sys.argv[1:]])
    check: dict[str, Any] = {}

    def write_doc() -> None:
        if args.doc:
            from diffprof.report.sections import write_section

            write_section(args.doc, args.section or f"e2e-{args.model}", markdown(rows, steps, check or None, command))
    size, steps = SETTINGS[args.model]["size"], SETTINGS[args.model]["steps"]
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · {args.model} {size}x{size} {steps} steps, batch 1, CFG 7.5, Euler, fp16")
    rows: dict[str, dict[str, Any]] = {}
    variants = args.variants.split(",")
    out = os.environ.get("OUT")
    print(f"\n{'variant':34s} {'total s':>8s} {'loop s':>8s} {'it/s':>7s} {'VAE ms':>7s} {'first s':>8s} {'peak GiB':>9s} {'speedup':>8s} {'latent err':>10s}")

    def measured(name: str, fn: Any, *fargs: Any, **fkwargs: Any) -> None:
        """Run one variant; print its row at once and keep the JSON current, so a later failure loses nothing."""
        try:
            r = fn(*fargs, **fkwargs)
        except Exception as exc:  # noqa: BLE001 - one failed variant must not lose the others
            print(f"{name:34s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            clean()
            return
        rows[name] = r
        base = rows.get("diffusers eager fp16")
        speed = base["total_s"] / r["total_s"] if base else float("nan")
        err = float("nan")
        if base is not None and r.get("latents") is not None:
            a, b = r["latents"], base["latents"]
            err = float((a - b).norm() / b.norm()) if a.shape == b.shape else float("nan")
        r["speedup"], r["latent_rel_err"] = speed, err
        print(f"{name:34s} {r['total_s']:8.3f} {r['loop_s']:8.3f} {steps / r['loop_s'] if r['loop_s'] else float('nan'):7.1f} {r['vae_s'] * 1e3:7.1f} "
              f"{(r['first_call_s'] or 0):8.1f} {r['peak_bytes'] / 2**30:9.2f} {speed:8.2f}x {err:10.2e}", flush=True)
        if out:
            with open(os.path.join(out, f"e2e-{args.model}.json"), "w") as fh:
                json.dump({k: {kk: vv for kk, vv in v.items() if kk not in ("latents", "loop_samples")} for k, v in rows.items()}, fh, indent=1, default=str)
        write_doc()

    if "eager" in variants or "compile" in variants:
        pipe = plain_pipeline(args.model)
        unet = pipe.unet
        print("attention processors:", sorted({type(p).__name__ for p in unet.attn_processors.values()}),
              "· dtypes:", sorted({str(p.dtype) for p in unet.parameters()}), "· cudnn.benchmark:", torch.backends.cudnn.benchmark)
        if "eager" in variants:
            measured("diffusers eager fp16", time_plain, pipe, size, steps, args.warmup, args.repeats)
        if "compile" in variants:
            pipe.fuse_qkv_projections()
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
            mode = "reduce-overhead" if args.model == "sd15" else "default"
            pipe.unet = torch.compile(pipe.unet, mode=mode, fullgraph=True)
            pipe.vae.decoder = torch.compile(pipe.vae.decoder, mode=mode, fullgraph=True)
            measured(f"diffusers + compile ({mode})", time_plain, pipe, size, steps, args.warmup, args.repeats)
        del pipe, unet
        clean()
    if "diffprof" in variants:
        measured("diffprof default (standard)", time_engine, args.model, size, steps, args.warmup, args.repeats)
    if "levels" in variants:
        for level in ("off", "minimal", "standard", "detailed"):
            measured(f"diffprof level={level}", time_engine, args.model, size, steps, 1 if level == "detailed" else args.warmup,
                     1 if level == "detailed" else args.repeats, level=level)
    if "hooks" in variants:
        pipe = plain_pipeline(args.model)
        for level in ("none", "off", "minimal", "standard"):
            measured(f"plain pipe + hooks level={level}", time_hooked, pipe, size, steps, args.warmup, args.repeats, level)
        del pipe
        clean()
    if "fast" in variants:
        measured("diffprof fast", time_engine, args.model, size, steps, args.warmup, args.repeats, optimize=["fast"])
    if "fast_fp8" in variants:
        measured("diffprof fast + fp8", time_engine, args.model, size, steps, args.warmup, args.repeats, optimize=["fast", "fp8"])
    for switches in args.optimize:
        measured(f"diffprof -O {switches}", time_engine, args.model, size, steps, args.warmup, args.repeats, optimize=switches.split(","))
    for order in args.sdpa_priority:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        names = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
        switches = (args.optimize or ["fast"])[0]
        with sdpa_kernel([names[n] for n in order.split(",")], set_priority=True):
            measured(f"-O {switches} sdpa={order}"[:34], time_engine, args.model, size, steps, args.warmup, args.repeats, optimize=switches.split(","))
    if "check" in variants:
        check.update(step_event_check(args.model, size, steps))
        print("\nper-step CUDA events vs synchronized wall:", check)
        write_doc()


if __name__ == "__main__":
    main()
