#!/usr/bin/env bash
# Regional compilation on the GPU (issue #8), one device call (~6 min on an H100/H200):
#   1. warm start: two fresh processes with -O fast,compile_regions (cold compile, then the saved
#      artifacts), SDXL 1024 px / 30 steps -- the 15 s target that whole-model `fast` misses (37.9 s);
#   2. steady state and latents: plain eager against `fast` and `fast,compile_regions`, same process.
# Run from the repo root on the lent machine:  bash benchmarks/gpu_regions.sh [sdxl|sd15]
MODEL=${1:-sdxl}
F="warn\|originates\|upsampling.py\|bfloat16 and\|^$\|AutoencoderKL\|Configuration class\|Unable to import\|CPUAllocator"
source benchmarks/gpu_env.sh
timeout 200 python3 benchmarks/gpu_warm_start.py --model "$MODEL" --optimize fast,compile_regions 2>&1 | grep -v -i "$F"
timeout 330 python3 benchmarks/gpu_e2e.py --model "$MODEL" --variants eager --optimize fast,compile_regions --optimize fast \
  --warmup 2 --repeats 3 2>&1 | grep -v -i "$F"
