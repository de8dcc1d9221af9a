"""Executors: where a sweep's cells run (this process, every GPU of this host, a Ray cluster).

``serial`` (default) runs cells one by one in this process; ``local`` starts one worker process
per visible GPU (or ``--workers N`` CPU workers); ``ray`` spreads them over a Ray cluster. The
contract is in :mod:`~diffprof.suites.executors.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffprof.errors import unknown_choice

if TYPE_CHECKING:  # pragma: no cover - config validation imports this module; keep it light
    from diffprof.config import RunConfig
    from diffprof.suites.executors.base import Executor

#: Executor names -> "module:class", imported on demand (ray is an optional extra).
EXECUTORS: dict[str, str] = {
    "serial": "diffprof.suites.executors.serial:SerialExecutor",
    "local": "diffprof.suites.executors.local:LocalExecutor",
    "ray": "diffprof.suites.executors.ray:RayExecutor",
}


def check_executor(name: str) -> str:
    if name not in EXECUTORS:
        raise unknown_choice("executor", name, EXECUTORS)
    return name


def get_executor(config: RunConfig) -> Executor:
    """The executor ``config.executor`` names, set up from the config (workers, Ray address)."""
    import importlib

    module, cls = EXECUTORS[check_executor(config.executor)].split(":")
    executor: Executor = getattr(importlib.import_module(module), cls)(config)
    return executor


__all__ = ["EXECUTORS", "check_executor", "get_executor"]
