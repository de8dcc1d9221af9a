#!/usr/bin/env bash
# GPU check for issues #2 and #3, one device call (~6 min):
#   profiler CUDA tests (event time vs synchronized wall, 1 GiB peak), profiler overhead on GPU,
#   `diffprof generate` with synthetic sd15 512/50 fp16 and sdxl 1024/30 fp16.
# Run on the lent machine from the repo root:  bash benchmarks/gpu_smoke.sh
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
echo "== profiler CUDA tests"
python3 -m pytest tests/test_profiler.py -m cuda -q -s -p no:cacheprovider 2>&1 | tail -8
echo "== profiler overhead (cuda)"
python3 benchmarks/profiler_overhead.py --device cuda --rounds 10 2>&1 | tail -12
echo "== generate sd15 512x512 50 steps fp16 (synthetic)"
python3 -m diffprof generate "a photo of an astronaut riding a horse" --model sd15 --weights synthetic --steps 50 \
  --width 512 --height 512 --precision fp16 --scheduler euler --batch 1 --warmup 1 --out "$OUT/sd15" --profile-out "$OUT/sd15-profile" 2>&1 | tail -16
echo "== generate sdxl 1024x1024 30 steps fp16 (synthetic)"
python3 -m diffprof generate "a photo of an astronaut riding a horse" --model sdxl --weights synthetic --steps 30 \
  --width 1024 --height 1024 --precision fp16 --scheduler euler --warmup 1 --out "$OUT/sdxl" 2>&1 | tail -16
