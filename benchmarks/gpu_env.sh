# Source on the lent GPU machine: installs the carried wheels (.whl/) and puts diffprof on the path.
# The machine has torch, transformers, accelerate, safetensors, pynvml but not diffusers.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || \
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Bytecode caches, as an ordinary install has them: without these, every fresh process recompiles the
# sources of torch._dynamo/_inductor and diffusers it imports (~8 s of a warm start's first call).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pycache
export OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
set +e
