"""How long Dynamo takes to trace a UNet, whole or by regions (issue #8, warm starts).

    python benchmarks/trace_cost.py --model sdxl

A warm start loads inductor's and AOTAutograd's artifacts, but Dynamo still traces the model in
every new process. This measures that tracing alone, on the host CPU where it runs: the real
architecture is built on the meta device (no weights, no kernels), compiled with a backend that
returns the traced graph unchanged, and called once; the first call is the trace. Whole-model
compile (`compile=unet`) against regional (`compile_regions`: diffusers' compile_repeated_blocks for
the transformer blocks plus diffprof's compile_conv_blocks for every ResNet, downsample and upsample
block, as `-O compile_regions` does; `blocks`: the transformer blocks alone).
Each mode runs in a fresh process so no Dynamo cache is shared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = """
import contextlib, json, sys, time, torch
torch.set_num_threads(1)
from diffprof.models.presets import get_preset
from diffprof.models.pipelines import component_class, init_kwargs
from diffprof.engine.apply import compile_conv_blocks
model, mode = sys.argv[1], sys.argv[2]
preset = get_preset(model)
cls = component_class(preset, "unet")
with torch.device("meta"):
    unet = cls.from_config(init_kwargs(cls, preset.component_config("unet"))).to(torch.float16).eval()
cfg = unet.config
size = preset.native_size // 8
kw = dict(sample=torch.randn(2, cfg.in_channels, size, size, device="meta", dtype=torch.float16),
          timestep=torch.tensor(500.0, device="meta"),
          encoder_hidden_states=torch.randn(2, 77, cfg.cross_attention_dim, device="meta", dtype=torch.float16))
if cfg.addition_embed_type == "text_time":
    kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 1280, device="meta", dtype=torch.float16),
                               "time_ids": torch.randn(2, 6, device="meta", dtype=torch.float16)}
graphs = []
def backend(gm, example_inputs):
    graphs.append(len(gm.graph.nodes))
    return gm.forward
if mode == "whole":
    unet = torch.compile(unet, backend=backend)
else:
    unet.compile_repeated_blocks(backend=backend, dynamic=False)
    if mode == "regions":
        compile_conv_blocks(unet, {}, backend=backend, settings=contextlib.ExitStack())  # held until the process exits
with torch.inference_mode():
    t0 = time.perf_counter(); unet(**kw); first = time.perf_counter() - t0
    t0 = time.perf_counter(); unet(**kw); second = time.perf_counter() - t0
print(json.dumps({"mode": mode, "trace_s": first - second, "first_s": first, "second_s": second, "graphs": len(graphs), "nodes": sum(graphs)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sdxl")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode")
    args = parser.parse_args()
    print(f"{args.model}: Dynamo trace of one UNet call (batch 2, native size), meta device, 1 thread")
    print(f"{'mode':8s} {'trace s (median)':>17s} {'all runs':>24s} {'graphs':>7s} {'FX nodes':>9s}")
    for mode in ("whole", "regions", "blocks"):
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, args.model, mode], capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"process_s": time.perf_counter() - t0})
        traces = sorted(r["trace_s"] for r in runs)
        print(f"{mode:8s} {traces[len(traces) // 2]:17.2f} {', '.join(f'{t:.2f}' for t in traces):>24s} {runs[0]['graphs']:7d} {runs[0]['nodes']:9d}", flush=True)


if __name__ == "__main__":
    main()
