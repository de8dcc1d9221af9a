"""Process-global settings that a pipeline needs for as long as it lives, restored afterwards.

``torch.backends.cudnn.benchmark`` and Dynamo's ``recompile_limit`` are one value for the whole
process: set for one engine and left set, they change every later cell measured in that process.
:meth:`ProcessSetting.held` sets one inside a ``with`` block (or an ``ExitStack`` that
``Engine.close`` unwinds) and puts the earlier value back when the last holder leaves, so engines
that overlap and close in any order still get the value they asked for while they live.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ProcessSetting:
    """One process-global value, read and written through ``read``/``write``. ``combine`` merges
    the value in force with a new holder's (``max``: raised, never lowered)."""

    def __init__(self, name: str, read: Callable[[], Any], write: Callable[[Any], None], combine: Callable[[Any, Any], Any] | None = None) -> None:
        self.name = name
        self._read = read
        self._write = write
        self._combine = combine
        self._lock = threading.Lock()
        self._holders = 0
        self._before: Any = None

    @property
    def value(self) -> Any:
        return self._read()

    @contextmanager
    def held(self, value: Any) -> Iterator[None]:
        """``value`` in force inside the block; the value from before the first holder comes back
        when the last one exits."""
        with self._lock:
            if self._holders == 0:
                self._before = self._read()
            self._holders += 1
            self._write(value if self._combine is None else self._combine(self._read(), value))
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._write(self._before)


def _torch() -> Any:
    import torch

    return torch


def _cudnn() -> Any:
    return _torch().backends.cudnn


def _dynamo_config() -> Any:
    import torch._dynamo.config as dynamo_config

    return dynamo_config


#: cuDNN times its convolution algorithms once per shape and keeps the fastest (``cudnn_benchmark``).
CUDNN_BENCHMARK = ProcessSetting(
    "torch.backends.cudnn.benchmark", lambda: _cudnn().benchmark, lambda v: setattr(_cudnn(), "benchmark", v)
)
#: Graphs Dynamo keeps per code object; raised for block-wise compiles on torch < 2.12, which has no
#: per-call ``recompile_limit`` (``apply.compile_conv_blocks``).
RECOMPILE_LIMIT = ProcessSetting(
    "torch._dynamo.config.recompile_limit",
    lambda: _dynamo_config().recompile_limit,
    lambda v: setattr(_dynamo_config(), "recompile_limit", v),
    combine=max,
)
