"""Rounds: repeats spread over rounds interleaved across a run's cells, merged, stored and resumed.

The order tests use a recording executor (no model): it answers every round with a result whose
``s_per_image`` says which round of which cell it was, so order and storage are checked exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO

import pytest
import torch
from rich.console import Console

from diffprof.config import RunConfig
from diffprof.results import CellResult
from diffprof.store import Store
from diffprof.suites import worker
from diffprof.suites.base import Cell, Round, expand
from diffprof.suites.executors.base import Executor, Intake, Listener, Results
from diffprof.suites.executors.serial import SerialExecutor
from diffprof.suites.rounds import RoundPlan, merge_rounds, round_calls, round_of
from diffprof.suites.runner import Runner

SWEEP = {"model": "tiny-sd", "suites": ["schedulers"], "schedulers": ["ddim", "euler", "pndm"], "steps": 2, "width": 32, "height": 32,
         "device": "cpu", "threads": 1, "report": None, "quality": ["none"]}


def fake_result(cell: Cell) -> CellResult:
    """A round's result whose time encodes the cell (its position in the sweep) and the round."""
    index = SWEEP["schedulers"].index(cell.labels["scheduler"]) + 1  # type: ignore[union-attr]
    r = cell.round.index if cell.round else 1
    value = index + r / 10  # ddim round 2 -> 1.2
    calls = cell.calls
    return CellResult(cell.suite, cell.labels, dict(cell.settings), metrics={"s_per_image": value, "load_s": 0.5 * r, "peak_allocated_bytes": 100.0 * r},
                      samples={"call_s": [value] * calls}, artifacts={"image.png": f"round{r}".encode()}, started_at=f"r{r}", finished_at=f"r{r}")


class RecordingExecutor(Executor):
    """Runs nothing: records the order cells arrive in and answers with :func:`fake_result`."""

    name = "recording"
    parallel = False

    def __init__(self, config: RunConfig, stop_after: int | None = None) -> None:
        super().__init__(config)
        self.order: list[tuple[str, int | None]] = []
        self.stop_after = stop_after

    def execute(self, cells: Sequence[Cell], listener: Listener) -> Results:
        intake = Intake(cells)
        while todo := intake.new():
            for cell in todo:
                if self.stop_after is not None and len(self.order) == self.stop_after:
                    raise KeyboardInterrupt
                self.order.append((cell.labels["scheduler"], cell.round.index if cell.round else None))
                yield cell, fake_result(cell)


def run(config: RunConfig, store: Store, executor: Executor, resume: int | None = None) -> int:
    return Runner(config, store, console=Console(file=StringIO()), progress=False, executor=executor).run(resume=resume).run_id


def test_repeats_are_shared_out_over_rounds() -> None:
    assert round_calls(3, 3) == [1, 1, 1] and round_calls(5, 3) == [2, 2, 1] and round_calls(4, 1) == [4]
    assert round_calls(1, 3) == [1]  # never more rounds than repeats
    cell = expand(RunConfig.from_mapping({**SWEEP, "repeats": 5, "rounds": 3}))[0]
    assert [round_of(cell, i).round for i in (1, 2, 3)] == [Round(1, 3, 2), Round(2, 3, 2), Round(3, 3, 1)]
    assert round_of(cell, 2).key == cell.key and round_of(cell, 2).calls == 2  # a round is its cell
    single = expand(RunConfig.from_mapping({**SWEEP, "rounds": 1}))[0]
    assert round_of(single, 1).round is None and single.calls == 3


def test_the_runner_hands_out_rounds_round_major_and_stores_every_round(tmp_path) -> None:
    config = RunConfig.from_mapping({**SWEEP, "repeats": 3, "rounds": 3})
    executor = RecordingExecutor(config)
    with Store(tmp_path / "r.db") as store:
        rid = run(config, store, executor)
        stored = store.get_run(rid, artifacts=True)
    assert executor.order == [(s, r) for r in (1, 2, 3) for s in ("ddim", "euler", "pndm")]
    assert [c.labels["scheduler"] for c in stored.cells] == ["ddim", "euler", "pndm"]  # sweep order, though stored 3 times each
    ddim = stored.cells[0]
    assert ddim.rounds["s_per_image"] == [1.1, 1.2, 1.3] and ddim.samples["call_s"] == [1.1, 1.2, 1.3]
    assert ddim.round_count == 3 and ddim.settings["rounds"] == 3
    assert ddim.metrics["s_per_image"] == pytest.approx(1.2)  # median of the rounds
    assert ddim.metrics["load_s"] == 0.5 and ddim.metrics["peak_allocated_bytes"] == 300.0  # first round's load, largest peak
    assert ddim.artifacts["image.png"] == b"round1" and (ddim.started_at, ddim.finished_at) == ("r1", "r3")
    assert "load_s" not in ddim.rounds and "peak_allocated_bytes" not in ddim.rounds  # measured once / combined by max
    spans = [s["label"] for s in stored.machine["spans"]]
    assert spans == ["round 1", "round 2", "round 3"] and stored.machine["wall_s"] > 0


def test_a_cell_measured_in_one_round_is_stored_as_before(tmp_path) -> None:
    config = RunConfig.from_mapping({**SWEEP, "repeats": 2, "rounds": 1})
    executor = RecordingExecutor(config)
    with Store(tmp_path / "r.db") as store:
        stored = store.get_run(run(config, store, executor))
    assert executor.order == [("ddim", None), ("euler", None), ("pndm", None)]
    assert all(c.rounds == {} and "rounds" not in c.settings and c.samples["call_s"] == [c.metrics["s_per_image"]] * 2 for c in stored.cells)


def test_merging_rounds_is_associative_and_a_failed_round_fails_the_cell() -> None:
    cell = expand(RunConfig.from_mapping({**SWEEP, "repeats": 3, "rounds": 3}))[0]
    parts = [fake_result(round_of(cell, i)) for i in (1, 2, 3)]
    whole = merge_rounds(parts, 3)
    stepwise = merge_rounds([merge_rounds(parts[:2], 3), parts[2]], 3)
    assert whole.to_dict() == stepwise.to_dict()
    broken = CellResult(cell.suite, cell.labels, {}, status="failed", error="RuntimeError: out of memory")
    failed = merge_rounds([*parts[:2], broken], 3)
    assert failed.status == "failed" and failed.error == "round 3 of 3: RuntimeError: out of memory"
    assert failed.rounds["s_per_image"] == [1.1, 1.2] and failed.settings["rounds"] == 2


def test_a_resumed_run_continues_each_cell_at_its_next_round(tmp_path) -> None:
    config = RunConfig.from_mapping({**SWEEP, "repeats": 3, "rounds": 3})
    with Store(tmp_path / "r.db") as store:
        interrupted = RecordingExecutor(config, stop_after=4)  # round 1 of all three, round 2 of ddim
        with pytest.raises(KeyboardInterrupt):
            run(config, store, interrupted)
        rid = store.list_runs()[0].id
        partial = store.get_run(rid)
        assert partial.status == "interrupted" and partial.machine["wall_s"] > 0  # the state is kept, Ctrl-C or not
        assert [c.round_count for c in partial.cells] == [2, 1, 1]
        resumed = RecordingExecutor(config)
        run(config, store, resumed, resume=rid)
        done = store.get_run(rid)
    assert resumed.order == [("ddim", 3), ("euler", 2), ("pndm", 2), ("euler", 3), ("pndm", 3)]
    assert [c.rounds["s_per_image"] for c in done.cells] == [[1.1, 1.2, 1.3], [2.1, 2.2, 2.3], [3.1, 3.2, 3.3]]
    assert done.machine["sessions"] == 2 and done.status == "finished"
    plan = RoundPlan(expand(config), {c.key: c for c in done.cells})
    assert plan.first() == [] and len(plan.complete) == 3  # nothing left to measure


def test_the_serial_executor_takes_up_the_next_round_as_it_is_queued(monkeypatch) -> None:
    config = RunConfig.from_mapping({**SWEEP, "repeats": 2, "rounds": 2})
    seen: list[tuple[str, int]] = []

    def fake_run(self: worker.CellWorker, cell: Cell) -> CellResult:
        seen.append((cell.labels["scheduler"], cell.round.index))  # type: ignore[union-attr]
        return fake_result(cell)

    monkeypatch.setattr(worker.CellWorker, "run", fake_run)
    plan = RoundPlan(expand(config))
    queue = plan.first()
    for done, result in SerialExecutor(config).execute(queue, Listener()):
        _, following = plan.add(done, result)
        if following is not None:
            queue.append(following)
    assert seen == [("ddim", 1), ("euler", 1), ("pndm", 1), ("ddim", 2), ("euler", 2), ("pndm", 2)]


class FakeEngine:
    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.base = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_engine_cache_keeps_several_cpu_engines_and_one_gpu_engine(monkeypatch) -> None:
    loads: list[tuple[str, ...]] = []
    device = {"value": "cpu"}

    def load(model: str, weights: str, *, optimize: list[str], **kw: object) -> FakeEngine:
        loads.append(tuple(optimize))
        return FakeEngine(device["value"])

    monkeypatch.setattr(worker.Engine, "load", staticmethod(load))
    monkeypatch.setattr(worker, "resolve_engine_device", lambda d: torch.device(device["value"]))
    monkeypatch.setattr(worker, "Profiler", lambda *a, **kw: None)  # a CUDA profiler needs a GPU; the engines are fake
    cache = worker.EngineCache()
    cells = [Cell("memory", {"optimization": o}, RunConfig.from_mapping({**SWEEP, "optimize": [o] if o != "none" else []}))
             for o in ("none", "vae_slicing", "vae_tiling", "attention_slicing", "none", "vae_slicing")]
    reused = [cache.get(c)[1] for c in cells]
    assert reused == [False, False, False, False, True, True]  # rounds come back to each pipeline: no reload
    assert len(cache.keys) == 4 and loads == [(), ("vae_slicing",), ("vae_tiling",), ("attention_slicing",)]
    fifth = Cell("memory", {"optimization": "x"}, RunConfig.from_mapping({**SWEEP, "optimize": ["vae_slicing", "vae_tiling"]}))
    cache.get(fifth)
    assert len(cache.keys) == worker.CPU_ENGINES and cells[2].engine_key not in cache.keys  # least recently used went
    engines = {id(cache._engines[k]) for k in cache.keys}
    device["value"] = "cuda"
    gpu = Cell("memory", {"optimization": "g"}, RunConfig.from_mapping({**SWEEP, "device": "cuda"}))
    old = list(cache._engines.values())
    cache.get(gpu)
    assert cache.keys == [gpu.engine_key] and all(e.closed for e in old) and engines  # one GPU engine, alone
    cache.drop()
    assert cache.keys == [] and cache.engine is None


def test_rounds_on_a_real_pipeline_warm_up_once_and_score_quality_once(tmp_path) -> None:
    """tiny-sd, 2 cells x 2 rounds: each cell's later round reuses its engine and skips warm-up."""
    config = RunConfig.from_mapping({**SWEEP, "schedulers": ["ddim", "euler"], "repeats": 2, "rounds": 2, "warmup": 1, "db": str(tmp_path / "r.db")})
    with Store(config.db) as store:
        summary = Runner(config, store, console=Console(file=StringIO()), progress=False).run()
        stored = store.get_run(summary.run_id)
    assert summary.ok == 2 and summary.failed == 0
    for cell in stored.cells:
        assert len(cell.rounds["s_per_image"]) == 2 and len(cell.samples["call_s"]) == 2
        assert cell.metrics["first_call_s"] > 0 and cell.settings["rounds"] == 2
        assert cell.metrics["s_per_image"] == pytest.approx(sum(cell.rounds["s_per_image"]) / 2)  # median of two


def test_an_engine_the_cache_drops_is_freed(tmp_path) -> None:
    """A dropped engine's pipeline must be collected, or a GPU sweep's later cells carry its weights
    in their peak. tiny-flux after one measured call holds its transformer in a cycle: when ``get``
    froze what loading made, it was never freed (clean() now freezes only what came before the
    process's first load)."""
    import gc
    import weakref

    from diffprof.suites.measure import measure_cell

    cache = worker.EngineCache()
    config = RunConfig.from_mapping({**SWEEP, "model": "tiny-flux", "suites": ["generation"], "width": 64, "height": 64, "repeats": 1})
    cell = Cell("generation", {}, config)
    engine, _ = cache.get(cell)
    measure_cell(engine, cell)
    denoiser = weakref.ref(engine.base.transformer)
    del engine
    cache.drop()
    gc.collect()
    assert denoiser() is None
