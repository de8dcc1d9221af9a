#!/usr/bin/env bash
# `diffprof tune` on the lent GPU (issue #5): synthetic SD 1.5, convergence metric (PSNR against a
# 100-step reference solve), baseline = the default diffusers setup (PNDM, 50 steps, fp16).
#   bash benchmarks/gpu_tune.sh
source benchmarks/gpu_env.sh
python3 -m diffprof tune --model sd15 --weights synthetic --device cuda --metric convergence \
  --precisions fp16 --schedulers dpmpp_2m,unipc,euler,ddim --step-counts 8,10,12,15,20,30 \
  --optimizations none,fast --prompts 4 --repeats 2 --db "$OUT/tune.db" --out "$OUT/tuned-sd15.yaml" --no-progress 2>&1 \
  | grep -v "Warning\|float32\|deprecate\|torchao\|FQNs"
