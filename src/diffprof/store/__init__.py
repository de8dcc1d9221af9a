"""The results store: benchmark runs and cells in SQLite or PostgreSQL, run references, and run comparison.

```python
from diffprof.store import Store, compare_runs

with Store("diffprof.db") as store:
    run_id = store.create_run("diffprof bench ...", config, capture_environment())
    for cell in cells:
        if cell.key not in store.finished_keys(run_id):
            store.add_cell(run_id, measure(cell))       # committed as soon as it returns
    store.finish_run(run_id)
    comparison = compare_runs(store, "latest~1", "latest")
    if comparison.has_regression: ...
```

The comparison itself is :func:`diffprof.analysis.compare.compare`, a pure function of two runs;
the rich tables the CLI prints live in :mod:`diffprof.report.console_tables`.
"""

from diffprof.store.compare import CellComparison, Comparison, compare_runs, significance
from diffprof.store.refs import RunRef, parse_ref
from diffprof.store.schema import SCHEMA_VERSION
from diffprof.store.store import DEFAULT_PATH, Store

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "CellComparison",
    "Comparison",
    "RunRef",
    "Store",
    "compare_runs",
    "parse_ref",
    "significance",
]
