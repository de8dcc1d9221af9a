#!/usr/bin/env bash
# The gate's GPU must-shows (issue 17) on the lent H200: false alarms and detection of `diffprof
# compare` on SD 1.5 (synthetic fp16 weights, 512x512, Euler, batch 1 with CFG), default rounds.
#   bash benchmarks/gpu_compare_calibration.sh          # both parts, about 8-9 minutes
#   bash benchmarks/gpu_compare_calibration.sh fast     # only -O fast (about 5.5 min); `eager` only eager (about 3.5 min)
#   FAST_PAIRS=6 EAGER_PAIRS=6 bash benchmarks/gpu_compare_calibration.sh   # fewer pairs, less time
#
# 1. `-O fast` (graphed loop, spread ~0.3%): FAST_PAIRS + 1 processes in a chain, each measuring a
#    50-step and a 51-step cell in 3 interleaved rounds. Run i against run i+1 gives an A/A pair
#    (both cells) and a slowdown pair (A's 50 steps against B's 51: 2% more work), judged at a 1%
#    threshold (FAST_THRESHOLD; a 2% change cannot pass a 5% one, and a 0.3% spread resolves 1%). The first
#    process compiles cold (~60 s) and saves the compile cache; the others start warm (~12 s).
# 2. eager (launch-bound, 16-30% drift between processes): EAGER_SEED runs first (the baseline
#    history a CI store holds, for the noise floor), then EAGER_PAIRS + 1 chained processes of one
#    50-step cell; the A/A pairs' `too noisy` notes say how many rounds, or --isolate, a 5% verdict needs.
# Tables on stdout and in $OUT/compare-calibration-{fast,eager}.md; the stores stay in $OUT.
#
# A chain longer than one device call: GATE_DIR (default .cache/gpu-gate, ignored by git) keeps the
# fast store and the compile caches; rerunning the same command goes on from the store's finished
# runs (CHAIN_DEADLINE seconds per call, default 540), and every call judges the whole chain so far.
# On a fresh machine, carry GATE_DIR back (the call copies it to $OUT/gpu-gate.tar).
source benchmarks/gpu_env.sh
GATE_DIR="${GATE_DIR:-.cache/gpu-gate}"
mkdir -p "$GATE_DIR"
export DIFFPROF_CACHE_DIR="${DIFFPROF_CACHE_DIR:-$GATE_DIR/diffprof-cache}" TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$GATE_DIR/inductor-cache}"
SD15="--model sd15 --weights synthetic --device cuda --scheduler euler --no-progress"
part="${1:-both}"
status=0
if [ "$part" = both ] || [ "$part" = fast ]; then
  python3 benchmarks/compare_calibration.py --pairing chain --pairs "${FAST_PAIRS:-10}" --busy-every 0 --slow-label steps=50:51 \
    --base "-s steps --step-counts 50,51 -O fast $SD15" --db "$GATE_DIR/compare-fast.db" --max-false 0 --threshold "${FAST_THRESHOLD:-1%}" \
    --deadline "${CHAIN_DEADLINE:-540}" --json "$OUT/compare-calibration-fast.json" > "$OUT/compare-calibration-fast.md" 2>&1 || status=1
  cat "$OUT/compare-calibration-fast.md"
  cp "$GATE_DIR/compare-fast.db" "$OUT/"
  tar -cf "$OUT/gpu-gate.tar" "$GATE_DIR" && ls -la "$OUT/gpu-gate.tar"
fi
if [ "$part" = both ] || [ "$part" = eager ]; then
  python3 benchmarks/compare_calibration.py --pairing chain --pairs "${EAGER_PAIRS:-10}" --seed-runs "${EAGER_SEED:-2}" --busy-every 0 \
    --base "-s steps --step-counts 50 $SD15" --db "$OUT/compare-eager.db" --max-false 0 \
    --json "$OUT/compare-calibration-eager.json" > "$OUT/compare-calibration-eager.md" 2>&1 || status=1
  cat "$OUT/compare-calibration-eager.md"
fi
exit $status
