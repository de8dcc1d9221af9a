"""Isolated cell worker: ``python -m diffprof.suites.worker`` reads one cell as JSON on stdin,
measures it in this fresh process and prints the CellResult as one JSON line on stdout.

A fresh process per cell is what makes ``--isolate`` honest: load time includes cold imports and
disk reads, and peak memory cannot include an earlier cell's leftovers.
"""

from __future__ import annotations

import json
import sys

import torch


def main() -> int:
    from diffprof.config import RunConfig
    from diffprof.profiler.samplers import process_peak_rss
    from diffprof.suites.base import Cell
    from diffprof.suites.runner import EngineCache, cell_to_json, run_cell_inline

    data = json.loads(sys.stdin.read())
    cell = Cell(data["suite"], data["labels"], RunConfig(**data["config"]))
    if cell.config.threads:
        torch.set_num_threads(cell.config.threads)
    result = run_cell_inline(cell, EngineCache(cell.config.profile_level))
    if result.ok:
        result.metrics["host_peak_rss_bytes"] = float(max(result.metrics.get("host_peak_rss_bytes", 0), process_peak_rss()))
        result.settings["isolated"] = True
    sys.stdout.write(json.dumps(cell_to_json(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
