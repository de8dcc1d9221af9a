"""The seed config's three methods on tiny-sd: plain dicts back, runs recorded in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from diffprof import DiffusionBenchmark, SEOConfig
from diffprof.store import Store

FAST = dict(repeats=1, warmup=0, threads=1, report=None, isolate=False)  # memory cells in this process (each a note that says so)


@pytest.fixture
def bench(tmp_path):
    config = SEOConfig(diffusion_model_name="tiny-sd", diffusion_steps=2, diffusion_height=32, diffusion_width=32, diffusion_guidance_scale=5.0)
    return DiffusionBenchmark(config, db=str(tmp_path / "seo.db"), **FAST)


def test_benchmark_diffusion_pipelines(bench):
    out = bench.benchmark_diffusion_pipelines("a large red circle in the center on a blue background")
    assert out["ok"] == 1 and out["failed"] == 0
    cell = out["results"]["tiny-sd"]
    assert cell["status"] == "ok" and cell["s_per_image"] > 0 and cell["text_encode_s"] > 0
    json.dumps(out)  # plain data
    with Store(out["db"]) as store:
        run = store.get_run(out["run_id"])
        assert [c.suite for c in run.cells] == ["generation"] and run.cells[0].settings["steps"] == 2


def test_profile_scheduler_performance(bench):
    out = bench.profile_scheduler_performance("a small blue square", ["euler", "dpmpp_2m", "ddim"])
    assert set(out["results"]) == {"euler", "dpmpp_2m", "ddim"}
    assert all(r["status"] == "ok" and r["steps_per_s"] > 0 for r in out["results"].values())


def test_profile_memory_optimizations(bench):
    out = bench.profile_memory_optimizations("a small blue square")
    # on a CPU the default list leaves out the CUDA-only offload modes
    assert set(out["results"]) == {"none", "attention_slicing", "vae_slicing", "vae_tiling"}
    assert all(r["host_peak_rss_bytes"] > 0 for r in out["results"].values())
    with Store(out["db"]) as store:
        assert len(store.list_runs()) == 1


def test_users_own_config_object_is_accepted(tmp_path):
    @dataclass
    class TheirConfig:  # what users have: any object with these attribute names
        diffusion_model_name: str = "tiny-sd"
        diffusion_steps: int = 1
        diffusion_height: int = 32
        diffusion_width: int = 32
        some_other_setting_of_theirs: str = "ignored"

    b = DiffusionBenchmark(TheirConfig(), db=str(tmp_path / "x.db"), **FAST)
    assert b.config.steps == 1 and b.config.width == 32
    out = b.profile_scheduler_performance("a red circle", ["euler"])
    assert out["results"]["euler"]["status"] == "ok"
