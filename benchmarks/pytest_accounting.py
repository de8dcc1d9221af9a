"""A pytest plugin that writes, per test, its wall time and the CPU time it took in its own process
and in the child processes it waited for (``ACCOUNTING_OUT``, one JSON line per test).

Why CPU beside wall: on a shared 2-core host a test's wall time moves with what other tenants run,
and a test that waits on subprocesses (isolated cells, executors' workers) shows almost no CPU of its
own. ``benchmarks/suite_time.py`` loads it with ``-p pytest_accounting``.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Iterator
from typing import Any

import pytest


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: Any, nextitem: Any) -> Iterator[None]:
    own, children, started = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    yield
    record = {"test": item.nodeid, "wall_s": time.perf_counter() - started, "self_cpu_s": _cpu(resource.RUSAGE_SELF) - own,
              "child_cpu_s": _cpu(resource.RUSAGE_CHILDREN) - children}
    with open(os.environ.get("ACCOUNTING_OUT", "accounting.jsonl"), "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
