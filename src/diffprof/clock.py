"""The clock every timing in diffprof reads: injectable, so timing logic is tested exactly.

A :data:`Clock` is any callable returning monotonic nanoseconds. The profiler, the engine and
``measure_cell`` each take one (default :data:`SYSTEM_CLOCK`, ``time.perf_counter_ns``) and read
nothing else, as ``torch.utils.benchmark.Timer`` takes its ``_timer_cls`` and pyinstrument's tests
swap in a fake timer. :class:`FakeClock` only moves when told, so a test that advances it by known
amounts inside each component can check every derived metric to the last digit.

Synchronizing a device before the clock is read is the device's business, not the clock's
(:func:`diffprof.engine.devices.synchronize`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Monotonic nanoseconds; ``time.perf_counter_ns`` or a test's fake.
Clock = Callable[[], int]

#: The real clock: the highest-resolution monotonic one Python has.
SYSTEM_CLOCK: Clock = time.perf_counter_ns


def seconds(start_ns: int, end_ns: int) -> float:
    """Seconds between two readings of a :data:`Clock`."""
    return (end_ns - start_ns) / 1e9


class FakeClock:
    """A nanosecond clock that moves only when :meth:`advance` is called (tests)."""

    def __init__(self, start: int = 1_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError(f"a monotonic clock cannot go back ({ns} ns)")
        self.now += ns
