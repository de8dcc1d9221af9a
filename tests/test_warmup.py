"""Warm-up settles on a GPU (the first replays in a fresh process run slow) and is exactly
``config.warmup`` calls on a CPU; checked with a fake clock and an engine whose calls take known times."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from diffprof.clock import FakeClock
from diffprof.suites import measure
from diffprof.suites.measure import SETTLE_MAX_CALLS, settled, warm_up

MS = 1_000_000


class TimedEngine:
    """Each ``generate`` advances the clock by the next of ``call_ms`` (then repeats the last)."""

    def __init__(self, device: str, call_ms: list[float], clock: FakeClock) -> None:
        self.device = SimpleNamespace(type=device)
        self.call_ms, self.clock, self.calls = call_ms, clock, 0

    def generate(self, request: object) -> None:
        self.clock.advance(int(self.call_ms[min(self.calls, len(self.call_ms) - 1)] * MS))
        self.calls += 1


@pytest.fixture(autouse=True)
def no_device_cleaning(monkeypatch):
    monkeypatch.setattr(measure, "clean", lambda device, reset_peaks=False: None)


def run(device: str, call_ms: list[float], calls: int = 1, settle: bool = True) -> tuple[int, float | None]:
    clock = FakeClock()
    engine = TimedEngine(device, call_ms, clock)
    first = warm_up(engine, None, calls, clock, settle=settle)  # type: ignore[arg-type]
    return engine.calls, first


def test_settled_compares_the_last_two_calls():
    assert not settled([1.0]) and not settled([60.0, 0.36]) and not settled([0.36, 0.34])
    assert settled([60.0, 0.36, 0.353]) and settled([0.325, 0.3251])


def test_a_gpu_warm_up_goes_on_until_two_calls_agree():
    # compile, then the slow first replays seen on the H200, then steady
    calls, first = run("cuda", [60_000, 362, 342, 326, 325])
    assert calls == 5 and first == pytest.approx(60.0)


def test_a_gpu_warm_up_that_never_settles_stops_at_its_cap():
    calls, _ = run("cuda", [100, 110, 100, 110, 100, 110, 100, 110, 100, 110, 100])
    assert calls == 1 + SETTLE_MAX_CALLS


def test_a_gpu_warm_up_of_long_calls_stops_at_its_time_budget():
    calls, _ = run("cuda", [9_000, 5_100, 4_800, 5_000])  # FLUX-sized eager calls: one extra call spends the budget
    assert calls == 2


def test_a_cpu_warm_up_is_the_configured_calls():
    assert run("cpu", [500, 300, 200, 100], calls=2) == (2, pytest.approx(0.5))


def test_no_warm_up_asked_is_none():
    assert run("cuda", [100], calls=0) == (0, None)


def test_an_engine_that_already_ran_warms_up_the_configured_calls():
    assert run("cuda", [362, 342, 326, 325], settle=False) == (1, pytest.approx(0.362))
