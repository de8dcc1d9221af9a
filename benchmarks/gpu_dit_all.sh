#!/usr/bin/env bash
# Issue 21's must-show tables on one H200/H100, in two device calls of under 9 minutes each:
#
#   bash benchmarks/gpu_dit_all.sh 1   # FLUX.1-dev 1024, 28 steps, guidance 3.5, bf16: (a) diffusers eager vs diffprof fast,
#                                      #   fast's lossless part; (d) per-component and per-step timings vs synchronized wall time;
#                                      #   (c) peak memory and time per memory option (8 steps; sequential offload 2)
#   bash benchmarks/gpu_dit_all.sh 2   # SD 3.5 Large 1024, 28 steps, CFG 3.5, bf16: (b) the same table as (a), and (d);
#                                      #   (e) estimate held out on FLUX.1-dev (calibrate 512-1024 px, predict five other workloads)
#   bash benchmarks/gpu_dit_all.sh tests   # the GPU-only paths' tests on the tiny presets (pytest -m cuda tests/test_fast_dit.py: flow-loop
#                                          #   CUDA graphs, fast with fp8 and regional compile, every memory switch), ~3-5 min
#   bash benchmarks/gpu_dit_all.sh smoke   # the whole chain on the tiny presets, on this machine's CPU (what the tests run)
#
# Everything goes to $OUT: each table as text (dit-*.txt, estimate-*.txt), as JSON, and docs/benchmarks.md with the tables in its
# sections (dit-MODEL, dit-memory-flux-dev, estimate-flux-dev). Each step has its own time limit (a step cut short keeps the
# rows it measured: every script writes its table after each variant), so one slow compile cannot cost the other tables.
# Compile caches (inductor's and diffprof's warm-start blobs) go to .cache/ in the repository (git-ignored): on a machine that
# stays warm between the two calls, part 2 reuses part 1's VAE kernels.
set -u
PART=${1:?"which part: 1 (FLUX.1-dev), 2 (SD 3.5 Large + estimate), tests or smoke"}
if [ "$PART" = smoke ]; then
  export OUT="${OUT:-/tmp/out}" PYTHONUNBUFFERED=1
  mkdir -p "$OUT"
  PY=${PY:-.venv/bin/python}
  DEV=(--device cpu --size 64 --steps 2)
  MODELS=(tiny-flux tiny-sd3)
  EST=(--model tiny-flux --device cpu --sizes 32,48,64 --quick --steps 2 --repeats 1)
  MEM=(--model tiny-flux --device cpu --size 64 --steps 2 --slow-steps 1 --options none,layerwise_casting,int8_weights,vae_tiling)
  FAST=(--optimize fast_loop,text_cache,fuse_qkv,int8_weights)
else
  source benchmarks/gpu_env.sh
  PY=python3
  DEV=(--device cuda --size 1024 --steps 28 --warmup 1 --repeats 2)
  MODELS=(flux-dev sd35-large)
  EST=(--model flux-dev --weights synthetic --device cuda --precision bf16 --sizes 512,768,1024 --quick --steps 4 --repeats 2 --force)
  MEM=(--model flux-dev --device cuda --size 1024 --steps 8 --slow-steps 2 --repeats 1)
  FAST=(--optimize fast --lossless --eager-repeats 1)
fi
mkdir -p .cache
export TORCHINDUCTOR_CACHE_DIR="$PWD/.cache/inductor" DIFFPROF_CACHE_DIR="$PWD/.cache/diffprof" TORCHINDUCTOR_FX_GRAPH_CACHE=1
DOC=${DOC:-docs/benchmarks.md}
QUIET='Warning|warn\(|deprecat|FQNs|Failed to load|_pytree|Unable to import|torchvision|register_constant'

step() {  # step SECONDS NAME SCRIPT ARGS...: one script under its own time limit, its output kept in $OUT/NAME.txt
  local limit=$1 name=$2
  shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit} s)"
  timeout --signal=INT --kill-after=20 "$limit" "$PY" "$@" 2>&1 | grep -Ev "$QUIET" | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s$([ "$rc" = 124 ] && echo ' (time limit: the rows before it are kept)')"
}

case $PART in
  1)
    step 300 dit-flux-dev benchmarks/gpu_dit.py --model flux-dev "${DEV[@]}" "${FAST[@]}" --doc "$DOC"
    step 180 dit-memory-flux-dev benchmarks/gpu_dit_memory.py "${MEM[@]}" --doc "$DOC" ;;
  2)
    step 320 dit-sd35-large benchmarks/gpu_dit.py --model sd35-large "${DEV[@]}" "${FAST[@]}" --doc "$DOC"
    step 170 estimate-flux-dev benchmarks/estimate_accuracy.py "${EST[@]}" --time-target 0.15 --memory-target 0.10 --doc "$DOC" ;;
  tests)
    echo "=== dit-cuda-tests (limit 330 s)"
    timeout --signal=INT --kill-after=20 330 python3 -m pytest tests/test_fast_dit.py -m "cuda and not slow" -q -p no:cacheprovider -rs 2>&1 \
      | grep -Ev "$QUIET" | tail -40 | tee "$OUT/dit-cuda-tests.txt" ;;
  smoke)
    for model in "${MODELS[@]}"; do
      step 300 "dit-$model" benchmarks/gpu_dit.py --model "$model" "${DEV[@]}" --precision fp32 "${FAST[@]}" --doc "$OUT/benchmarks.md"
    done
    step 300 dit-memory-tiny-flux benchmarks/gpu_dit_memory.py "${MEM[@]}" --doc "$OUT/benchmarks.md"
    step 600 estimate-tiny-flux benchmarks/estimate_accuracy.py "${EST[@]}" --doc "$OUT/benchmarks.md" ;;
  *) echo "unknown part $PART: give 1, 2, tests or smoke" >&2; exit 2 ;;
esac
case $PART in 1|2) cp "$DOC" "$OUT/benchmarks.md" ;; esac
echo "=== part $PART done in $SECONDS s; files in $OUT"
