#!/usr/bin/env bash
# Calibrate under load on the lent H200 (issue 17's must-show, GPU half): synthetic SD 1.5 fp16,
# `diffprof calibrate --device cuda` quiet and beside LOADS busy-loop processes (default 0,8,16: the
# host's 16 cores leave ~15 free beside one launch-bound run, so 8 loops take half of them and make it
# busy; 16 take all), then 8 held-out workloads predicted by each and measured once without a loop.
#   bash benchmarks/gpu_calibrate_under_load.sh              # about 5-7 minutes
#   LOADS=0,16 bash benchmarks/gpu_calibrate_under_load.sh   # quiet and fully loaded only
# Table on stdout and in $OUT/calibrate-under-load-gpu.md; the store in $OUT/calibrate-under-load-gpu/.
source benchmarks/gpu_env.sh
python3 benchmarks/calibrate_under_load.py --device cuda --models "${MODELS:-sd15}" --weights synthetic --loads "${LOADS:-0,8,16}" \
  --calibrate-args "--weights synthetic --precision fp16" --db "$OUT/calibrate-under-load-gpu" > "$OUT/calibrate-under-load-gpu.md" 2>&1
status=$?
cat "$OUT/calibrate-under-load-gpu.md"
exit $status
