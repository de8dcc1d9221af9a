#!/usr/bin/env bash
# Warm starts (issue #8): the same `fast` generation in two fresh processes. The first compiles cold
# and saves its compile artifacts to $DIFFPROF_CACHE_DIR; the second starts from a fresh inductor
# cache, so only diffprof's saved artifacts can make it warm. Prints each process's first call.
#   bash benchmarks/gpu_warm_start.sh sd15 512 50
#   PROFILE=1 bash benchmarks/gpu_warm_start.sh ...   # also: where the warm process spends its time (cProfile)
#   OPTIMIZE=fast,compile_regions bash benchmarks/gpu_warm_start.sh sdxl 1024 30   # other switches (default: fast)
#   SHARED_INDUCTOR_CACHE=1 ...   # both processes share one inductor cache dir (torch's own on-disk caches,
#                                 # e.g. TORCH_CACHING_PRECOMPILE=1's Dynamo cache, which lives there)
source benchmarks/gpu_env.sh
MODEL=${1:-sd15}; SIZE=${2:-512}; STEPS=${3:-50}; OPTIMIZE=${OPTIMIZE:-fast}
export DIFFPROF_CACHE_DIR=$(mktemp -d)
shared_cache=$(mktemp -d)
for attempt in cold warm; do
  if [ -n "$SHARED_INDUCTOR_CACHE" ]; then export TORCHINDUCTOR_CACHE_DIR=$shared_cache; else export TORCHINDUCTOR_CACHE_DIR=$(mktemp -d); fi
  echo "== $attempt process ($MODEL ${SIZE}px, $STEPS steps, -O $OPTIMIZE)"
  run=(-m diffprof)
  if [ "$attempt" = warm ] && [ -n "$PROFILE" ]; then run=(-m cProfile -o "$OUT/warm-start.prof" -m diffprof); fi
  /usr/bin/time -f "process wall %e s" python3 "${run[@]}" generate "a photo of an astronaut riding a horse" --model $MODEL --weights synthetic \
    --steps $STEPS --width $SIZE --height $SIZE --precision fp16 --scheduler euler -O "$OPTIMIZE" --out "$OUT/warm-$attempt" 2>&1 \
    | grep -E "first call|whole call|denoising|pipeline load|process wall|error|Error"
done
if [ -n "$PROFILE" ] && [ -f "$OUT/warm-start.prof" ]; then
  python3 - "$OUT/warm-start.prof" <<'PY'
import pstats, sys
stats = pstats.Stats(sys.argv[1])
stats.sort_stats("cumulative").print_stats(45)
stats.sort_stats("tottime").print_stats(20)
PY
fi
