#!/usr/bin/env bash
# The memory suite on SDXL 1024 (issue #8), one device call (~6 min on an H100/H200): every memory
# optimization's peak and time, then its tables into docs/benchmarks.md (section memory-sdxl[-fast]).
#   bash benchmarks/gpu_memory.sh            # eager (the pipeline as diffusers runs it)
#   bash benchmarks/gpu_memory.sh fast       # each cell on top of -O fast
# The store ($OUT/memory.db) and an HTML report come back in $OUT as well.
source benchmarks/gpu_env.sh
PRESET=${1:-}
NAME=memory-sdxl${PRESET:+-$PRESET}
python3 -m diffprof bench -s memory --model sdxl --weights synthetic ${PRESET:+-O $PRESET} --steps 10 --precision fp16 \
  --scheduler euler --repeats 2 --warmup 1 --db "$OUT/memory.db" --report "$OUT/$NAME.html" --no-progress --name "$NAME" 2>&1 \
  | grep -v "Warning\|deprecate\|torchao\|FQNs"
python3 -m diffprof report "$NAME" --db "$OUT/memory.db" --into docs/benchmarks.md --section "$NAME"
cp docs/benchmarks.md "$OUT/"
