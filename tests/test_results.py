"""Results own their serialization: to_dict/from_dict round trips (artifacts, ids, non-finite
numbers), the checks from_dict makes, and the worker's JSON going through them."""

from __future__ import annotations

import json
import math

import pytest

from diffprof.errors import InputError
from diffprof.results import CellResult, RunInfo


def cell(i: int = 0, **over: object) -> CellResult:
    base = dict(
        suite="schedulers",
        labels={"scheduler": "euler", "steps": 20 + i},
        settings={"model": "tiny-sd", "size": [64, 64], "quality": {"metrics": ["adherence"], "prompts": 2}},
        metrics={"s_per_image": 0.1 + i, "mfu": math.nan},
        samples={"call_s": [0.1, 0.11, math.inf]},
        artifacts={"image.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "timeline.json": b"[]"},
        started_at="2026-11-26T10:00:00+00:00",
        finished_at="2026-11-26T10:00:01+00:00",
        id=40 + i,
        cell_key=f"key{i}",
    )
    base.update(over)
    return CellResult(**base)  # type: ignore[arg-type]


def same(a: CellResult, b: CellResult) -> bool:
    """Equal, NaN included (NaN != NaN, so compare metrics as text)."""
    return (json.dumps(a.to_dict(True), sort_keys=True) == json.dumps(b.to_dict(True), sort_keys=True)) and a.artifacts == b.artifacts


def test_cell_round_trip_with_artifacts_id_and_key():
    original = cell()
    data = original.to_dict(with_artifacts=True)
    assert set(data) >= {"id", "cell_key", "artifacts", "samples", "metrics"}
    back = CellResult.from_dict(json.loads(json.dumps(data)))  # through JSON text, as a worker sends it
    assert same(back, original) and back.id == 40 and back.cell_key == "key0" and back.key == original.key
    assert math.isnan(back.metrics["mfu"]) and back.samples["call_s"][-1] == math.inf
    slim = CellResult.from_dict(original.to_dict())
    assert slim.artifacts == {} and slim.metrics["s_per_image"] == original.metrics["s_per_image"]


def test_strict_json_names_of_non_finite_numbers_read_back():
    data = cell().to_dict()
    data["metrics"] = {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 3}
    back = CellResult.from_dict(data)
    assert math.isnan(back.metrics["a"]) and back.metrics["b"] == math.inf and back.metrics["c"] == -math.inf
    assert back.metrics["d"] == 3.0 and isinstance(back.metrics["d"], float)


def test_run_round_trip():
    run = RunInfo(7, "2026-11-26T10:00:00", "2026-11-26T10:05:00", "finished", "diffprof bench", {"repeats": 3},
                  {"torch": {"version": "2.13.0"}}, [cell(0), cell(1, status="failed", error="boom")], name="baseline",
                  counts={"ok": 1, "failed": 1})  # fmt: skip
    back = RunInfo.from_dict(json.loads(json.dumps(run.to_dict(with_artifacts=True))))
    assert (back.id, back.name, back.counts, back.command, back.config, back.environment) == (
        7, "baseline", {"ok": 1, "failed": 1}, "diffprof bench", {"repeats": 3}, {"torch": {"version": "2.13.0"}},
    )  # fmt: skip
    assert all(same(a, b) for a, b in zip(back.cells, run.cells)) and len(back.cells) == 2
    assert back.failed_cells[0].error == "boom"


def test_older_data_takes_defaults():
    back = CellResult.from_dict({"suite": "steps"})
    assert (back.labels, back.status, back.metrics, back.id, back.cell_key) == ({}, "ok", {}, None, None)
    run = RunInfo.from_dict({"id": 1, "created_at": "2026-01-01", "status": "finished"})
    assert run.cells == [] and run.name is None and run.command == ""


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "a cell must be a mapping"),
        ({"labels": {}}, "field 'suite'"),
        ({"suite": "s", "status": "done"}, "status must be 'ok' or 'failed'"),
        ({"suite": "s", "labels": [1]}, "field 'labels' \\(dict expected, got list\\)"),
        ({"suite": "s", "metrics": {"x": "fast"}}, "field 'metric x' \\(a number expected"),
        ({"suite": "s", "metrics": {"x": True}}, "field 'metric x'"),
        ({"suite": "s", "samples": {"call_s": 1.0}}, "field 'sample call_s' \\(a list expected"),
        ({"suite": "s", "artifacts": {"image.png": "not base64!"}}, "not valid base64"),
        ({"suite": "s", "id": "7"}, "field 'id' \\(int expected"),
    ],
)
def test_bad_cell_data_is_refused_with_the_field_named(data, message):
    with pytest.raises(InputError, match=message) as err:
        CellResult.from_dict(data)
    assert err.value.hint


def test_bad_run_data_is_refused():
    with pytest.raises(InputError, match="missing or mangles field 'id'"):
        RunInfo.from_dict({"created_at": "x", "status": "finished"})
    with pytest.raises(InputError, match="field 'cells'"):
        RunInfo.from_dict({"id": 1, "created_at": "x", "status": "finished", "cells": {"a": 1}})


def test_worker_json_keeps_every_field_and_checks_it():
    """Worker processes send cells as JSON: the id and key survive, bad data is an error, not a
    half-filled cell."""
    from diffprof.suites.worker import cell_from_json, cell_to_json

    original = cell()
    back = cell_from_json(json.loads(json.dumps(cell_to_json(original))))
    assert same(back, original) and back.id == original.id and back.cell_key == original.cell_key
    with pytest.raises(InputError, match="field 'suite'"):
        cell_from_json({"labels": {}})
