"""Warm starts (issue #8): the same generation in two fresh processes, cold then warm.

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_warm_start.py --model sd15 --doc docs/benchmarks.md'
    ... --model sdxl --optimize fast,compile_regions      # other switches (default: fast)
    ... --profile                                          # cProfile the warm process: where its time goes
    ... --shared-inductor-cache                            # both processes share one inductor cache dir

The first process compiles cold and saves its compile artifacts to a fresh $DIFFPROF_CACHE_DIR. The
second starts from a fresh inductor cache, so only diffprof's saved artifacts can make it warm. Each
process reports its first call (compile + graph capture + lazy init, what `diffprof generate` prints
as "first call"), one steady call, and its whole wall time from launch to exit. With --doc the table
goes into that page's `warm-start-MODEL[-SWITCHES]` section. Exits 1 if either process failed (its
row then says why).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any

PROMPT = "a photo of an astronaut riding a horse"
SETTINGS = {"sd15": (512, 50), "sdxl": (1024, 30), "sd21": (768, 50)}


def child(model: str, optimize: str) -> None:
    """One process's work: load, first call, one steady call; prints one JSON line."""
    import torch

    from diffprof.engine import Engine

    size, steps = SETTINGS[model]
    engine = Engine.load(model, "synthetic", device="cuda", precision="fp16", optimize=optimize.split(","))
    kwargs = dict(prompt=PROMPT, steps=steps, width=size, height=size, scheduler="euler", guidance=7.5, seed=0)
    engine.generate(**kwargs)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    engine.generate(**kwargs)
    torch.cuda.synchronize()
    steady = time.perf_counter() - t0
    info = engine.load_info
    print(json.dumps({"load_s": info.seconds, "first_call_s": info.first_call_s, "steady_s": steady, "compile_cache": info.compile_cache}))


def markdown(rows: dict[str, dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    from diffprof.report.markdown import escape, pipe_table
    from diffprof.report.sections import provenance

    size, steps = SETTINGS[args.model]
    lines = [provenance(command), "",
             f"{args.model} {size}x{size}, {steps} steps, batch 1 with CFG 7.5, Euler, synthetic fp16 weights, `-O {args.optimize}`; "
             "each process has its own empty inductor cache" + (" (shared between the two)" if args.shared_inductor_cache else "") + ".", ""]
    body = [[name, f"failed: {escape(r['error'][:160])}", "", "", "", f"{r['wall_s']:.1f}"] if "error" in r else
            [name, r["compile_cache"], f"{r['load_s']:.1f}", f"**{r['first_call_s']:.1f}**", f"{r['steady_s']:.3f}", f"{r['wall_s']:.1f}"]
            for name, r in rows.items()]
    headers = ["process", "compile cache", "load s", "first call s (compile + capture + lazy init)", "steady call s", "process wall s"]
    lines += pipe_table(headers, body, [False, False, True, True, True, True])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd15", choices=sorted(SETTINGS))
    parser.add_argument("--optimize", default="fast", help="diffprof switches, as -O takes them (default: fast)")
    parser.add_argument("--profile", action="store_true", help="run the warm process under cProfile; prints its top functions")
    parser.add_argument("--shared-inductor-cache", action="store_true", help="both processes share one inductor cache directory")
    parser.add_argument("--doc", metavar="PAGE.md", help="also write the table into this markdown page")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.optimize)
        return
    command = "python3 " + shlex.join(["benchmarks/gpu_warm_start.py", *sys.argv[1:]])
    out = os.environ.get("OUT", tempfile.gettempdir())
    env = dict(os.environ, DIFFPROF_CACHE_DIR=tempfile.mkdtemp(prefix="diffprof-cache-"))
    shared = tempfile.mkdtemp(prefix="inductor-")
    rows: dict[str, dict[str, Any]] = {}
    for attempt in ("cold", "warm"):
        env["TORCHINDUCTOR_CACHE_DIR"] = shared if args.shared_inductor_cache else tempfile.mkdtemp(prefix="inductor-")
        prof = os.path.join(out, "warm-start.prof")
        runner = ["-m", "cProfile", "-o", prof] if attempt == "warm" and args.profile else []
        cmd = [sys.executable, *runner, __file__, "--child", "--model", args.model, "--optimize", args.optimize]
        print(f"== {attempt} process ({args.model}, -O {args.optimize})", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0 or not last.startswith("{"):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            rows[attempt] = {"error": tail, "wall_s": wall}
            print(f"   failed (exit {proc.returncode}): {proc.stderr[-3000:]}", flush=True)
        else:
            rows[attempt] = dict(json.loads(last), wall_s=wall)
            print(f"   {rows[attempt]}", flush=True)
        if args.doc:
            from diffprof.report.sections import write_section

            key = f"warm-start-{args.model}" + ("" if args.optimize == "fast" else "-" + re.sub(r"[^A-Za-z0-9._-]", "-", args.optimize))
            write_section(args.doc, key, markdown(rows, args, command))
    if args.profile and os.path.exists(os.path.join(out, "warm-start.prof")):
        import pstats

        stats = pstats.Stats(os.path.join(out, "warm-start.prof"))
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(20)
    if any("error" in r for r in rows.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
