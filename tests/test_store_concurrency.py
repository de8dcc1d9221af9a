"""Real `diffprof bench` processes writing one PostgreSQL store at once, one SIGKILLed after its
first stored round and resumed: every cell of every run exactly once, the killed writer losing only
the round it was measuring, foreign keys and no orphans. benchmarks/pg_writers.py is the same with 8
writers (and prints its figures); here 1 writer and the victim (two benches writing at once) keep the
suite's time small.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from rawdb import query

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "pg_writers.py"


def _script():
    spec = importlib.util.spec_from_file_location("pg_writers", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_concurrent_bench_processes_and_a_killed_one_store_every_cell_once(pg_server, tmp_path: Path) -> None:
    script = _script()
    db = pg_server.create_store("writers")
    outcome = script.run(db, writers=1, logs=tmp_path)
    assert outcome.problems == [], "\n".join(outcome.problems + [f"--- {k}\n{v[-1500:]}" for k, v in outcome.logs.items()])
    # the victim died after its first stored round and kept it: fewer cells than all, each whole as far as it got;
    # the resume measured the rest (each cell from its next round) and the run holds every cell once, ok
    assert 1 <= outcome.killed_kept < outcome.victim_cells
    done = re.search(r"run \d+: (\d+) ok, 0 failed", outcome.resume_output)
    assert done and int(done.group(1)) == outcome.victim_cells, outcome.resume_output[-2000:]

    # what is in the tables, read without diffprof
    runs = dict(query(db, "SELECT name, id FROM runs"))
    assert sorted(runs) == ["writer-0", "writer-killed"]
    per_run = dict(query(db, "SELECT run_id, COUNT(*) FROM cells WHERE status = 'ok' GROUP BY run_id"))
    assert per_run == {runs["writer-0"]: 2, runs["writer-killed"]: outcome.victim_cells}
    assert query(db, "SELECT run_id, cell_key FROM cells GROUP BY run_id, cell_key HAVING COUNT(*) > 1") == []
    for table in ("metrics", "samples", "rounds", "artifacts"):
        assert query(db, f"SELECT COUNT(*) FROM {table} WHERE cell_id NOT IN (SELECT id FROM cells)") == [(0,)], table
    assert query(db, "SELECT COUNT(*) FROM cells WHERE id NOT IN (SELECT cell_id FROM metrics)") == [(0,)]  # no cell without its metrics
    assert query(db, "SELECT DISTINCT status FROM runs") == [("finished",)]
    foreign = query(db, "SELECT conrelid::regclass::text, convalidated FROM pg_constraint "
                    "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace ORDER BY 1")  # this store's schema only
    assert [t for t, _ in foreign] == ["artifacts", "cells", "metrics", "rounds", "samples"] and all(v for _, v in foreign)
