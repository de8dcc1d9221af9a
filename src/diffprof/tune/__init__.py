"""``diffprof tune``: the fastest scheduler x steps x precision x optimizations that holds quality.

```python
from diffprof.config import RunConfig
from diffprof.tune import tune

result = tune(RunConfig(model="shapes-sd", device="cpu", threads=1), output="tuned.yaml")
print(result.summary())            # chosen setting, speedup vs 50-step default, constraints
result.config                      # a RunConfig that `diffprof bench/generate --config` run
```

- :mod:`~diffprof.tune.space`: the axes searched and the baseline (the default diffusers setup);
- :mod:`~diffprof.tune.constraints`: the quality floor and memory cap, per metric;
- :mod:`~diffprof.tune.search`: the search over an injected evaluator (screen, confirm, prune);
- :mod:`~diffprof.tune.result`: :class:`TuneResult`, the evidence table and the written config;
- :mod:`~diffprof.tune.runner`: :func:`tune`, which measures candidates as stored ``tune`` cells.
"""

from diffprof.tune.constraints import TUNE_METRICS, Constraints, TuneMetric, resolve_metric
from diffprof.tune.result import NoConfigMeetsConstraints, TuneResult, tuned_config, write_config
from diffprof.tune.runner import tune
from diffprof.tune.search import Candidate, Search, TuneError
from diffprof.tune.space import SearchSpace, Setting

__all__ = [
    "TUNE_METRICS",
    "Candidate",
    "Constraints",
    "NoConfigMeetsConstraints",
    "Search",
    "SearchSpace",
    "Setting",
    "TuneError",
    "TuneMetric",
    "TuneResult",
    "resolve_metric",
    "tune",
    "tuned_config",
    "write_config",
]
