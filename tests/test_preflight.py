"""Before measuring: what cannot fit or cannot run here is said up front, the rest runs; the seed
config means what it says (standard-level timings, its Hub id, its sequential offload on a CPU)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import torch

from diffprof import DiffusionBenchmark
from diffprof.cli.app import main
from diffprof.config import RunConfig
from diffprof.errors import ModelError, ResourceError
from diffprof.estimate.memory_check import check_fits, forecast
from diffprof.results import DEVICE_NOTE, MEMORY_NOTE, PROFILE_NOTE
from diffprof.store import Store
from diffprof.suites.base import expand

SEED = Path(__file__).parent / "data" / "seed_config.yaml"
CPU = torch.device("cpu")
TINY = dict(model="tiny-sd", width=32, height=32, steps=2, repeats=1, warmup=0, threads=1, report=None, device="cpu")


# ------------------------------------------------------------------ memory
def test_a_batch_that_cannot_fit_is_refused_before_loading_with_the_numbers(tmp_path, capsys):
    """generate --batch 100000 on a CPU grew to 23.5 GB and was killed after 146 s, silently."""
    code = main(["generate", "a red circle", "--model", "tiny-sd", "--device", "cpu", "--batch", "1000000", "--out", str(tmp_path / "img")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "predicted peak of batch 1000000 is at least" in err and "GiB of host memory" in err and "available" in err
    assert "hint: use a batch of at most" in err and "--force" in err
    assert not (tmp_path / "img").exists()  # refused before anything was loaded or written


def test_the_forecast_grows_with_the_batch_and_force_skips_the_check():
    small = forecast(RunConfig.from_mapping({**TINY, "batch": 1}), CPU)
    big = forecast(RunConfig.from_mapping({**TINY, "batch": 1_000_000}), CPU)
    assert small is not None and big is not None
    assert small.fits and small.peak_bytes < 2**30 and not big.fits and big.exact
    assert big.peak_bytes > psutil.virtual_memory().available and big.largest_batch < 1_000_000
    # the batch it names as the largest that fits, fits what was available then (free memory moves between calls)
    at_largest = forecast(RunConfig.from_mapping({**TINY, "batch": max(big.largest_batch, 1)}), CPU)
    assert at_largest.peak_bytes <= big.available_bytes < forecast(RunConfig.from_mapping({**TINY, "batch": big.largest_batch + 2}), CPU).peak_bytes
    with pytest.raises(ResourceError):
        check_fits(RunConfig.from_mapping({**TINY, "batch": 1_000_000}), CPU)
    assert check_fits(RunConfig.from_mapping({**TINY, "batch": 1_000_000, "force": True}), CPU) is None


def test_a_sweep_fails_the_cells_that_cannot_fit_up_front_and_runs_the_others(tmp_path, capsys):
    db = tmp_path / "m.db"
    code = main(["bench", "-s", "batch", "--batch-sizes", "1,1000000", "--model", "tiny-sd", "--width", "32", "--height", "32", "--steps", "1",
                 "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu", "--db", str(db), "--no-report", "--no-progress"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3
    assert "1 of 2 cells cannot run and are stored as failed without measuring" in err and "predicted peak" in err
    with Store(db) as store:
        cells = {c.labels["batch"]: c for c in store.get_run("latest").cells}
    assert cells[1].ok and not cells[1_000_000].ok and "predicted peak" in (cells[1_000_000].error or "")


# ------------------------------------------------------------------ what a CPU cannot run
def test_cells_a_cpu_cannot_run_are_said_once_before_measuring(tmp_path, capsys):
    code = main(["bench", "--dry-run", "-s", "precision", "--precisions", "fp16,fp32", "--device", "cpu", "--model", "tiny-sd"])
    out, err = capsys.readouterr()
    assert code == 0 and "4 cells" in out and "nothing measured" in out
    assert "2 of 4 cells cannot run" in err and "fp16 on cpu is not supported" in err


def test_the_memory_suite_isolates_its_cells_on_a_cpu_by_default():
    """Host RSS in one process only grows in cell order (567, 573, 589, 605 MiB): it ranked nothing."""
    default = expand(RunConfig.from_mapping({**TINY, "suites": ["memory"]}))
    assert default and all(c.config.isolate for c in default)
    shared = expand(RunConfig.from_mapping({**TINY, "suites": ["memory"], "isolate": False}))
    assert not any(c.config.isolate for c in shared)
    assert not any(c.config.isolate for c in expand(RunConfig.from_mapping({**TINY, "suites": ["steps"]})))


# ------------------------------------------------------------------ the seed config
def test_the_seed_config_as_written_offline_suggests_the_preset_with_synthetic_weights(capsys):
    assert main(["bench", "--dry-run", "--config", str(SEED)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "runwayml/stable-diffusion-v1-5" in lines[0] and "is now stable-diffusion-v1-5/stable-diffusion-v1-5" in lines[0]
    assert "--model sd15 --weights synthetic" in lines[1]


def test_the_seed_config_with_synthetic_weights_is_the_sd15_architecture(capsys):
    """Its Hub id with --weights synthetic builds the preset it names; the seed's fields map as they say."""
    config = RunConfig.load(SEED, {"weights": "synthetic"})
    assert config.profile_level == "standard"  # enable_code_profiling: the seed's basic profiling, not kernel captures
    assert "sequential_cpu_offload" in config.optimize and config.precision == "half"
    assert config.suites == ["generation", "schedulers", "resolutions", "memory", "precision"] and config.schedulers == ["euler", "dpmpp_2m", "ddim"]
    from diffprof.models.resolve import resolve_source

    kind, preset = resolve_source(config.model, config.weights)
    assert kind == "preset" and preset.name == "sd15"
    assert main(["bench", "--dry-run", "--config", str(SEED), "--weights", "synthetic", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "sequential_cpu_offload left out on the cpu" in err and "every cell runs without it" in err
    assert "cells (executor serial, device cpu)" in out


def test_the_seed_config_runs_on_a_cpu_saying_up_front_what_it_cannot_run(tmp_path, capsys):
    """Every SEOConfig field as the seed has them (its model swapped for the built-in tiny one, so a
    CPU test takes seconds): the up-front note, every cell ok, timings at standard, nothing colliding."""
    bench = DiffusionBenchmark(str(SEED), **TINY, db=str(tmp_path / "seed.db"), isolate=False)
    assert bench.config.profile_level == "standard" and "sequential_cpu_offload" in bench.config.optimize
    out = bench.benchmark_diffusion_pipelines("a red circle")
    err = " ".join(capsys.readouterr().err.split())
    assert "sequential_cpu_offload left out on the cpu" in err  # said before measuring
    assert out["notes"] and "sequential_cpu_offload" in out["notes"][0]
    assert out["ok"] == 1 and out["failed"] == 0 and out["results"]["tiny-sd"]["status"] == "ok"
    memory = bench.profile_memory_optimizations("a red circle")
    assert memory["failed"] == 0 and set(memory["results"]) == {"none", "attention_slicing", "vae_slicing", "vae_tiling"}
    with Store(tmp_path / "seed.db") as store:
        for run in store.list_runs():
            for cell in store.get_run(run.id).cells:
                assert cell.ok and PROFILE_NOTE not in cell.settings and DEVICE_NOTE in cell.settings
                assert "sequential_cpu_offload" not in cell.settings["optimizations"]
                assert (MEMORY_NOTE in cell.settings) == (cell.suite == "memory")  # shared-process RSS: said so


def test_generation_and_pipelines_cells_of_one_model_do_not_collide(tmp_path):
    bench = DiffusionBenchmark({"diffusion_model_name": "tiny-sd", "profile_pipeline_variants": True, "models": ["tiny-sd", "tiny-sdxl"]},
                               **TINY, db=str(tmp_path / "p.db"))
    out = bench.benchmark_diffusion_pipelines("a red circle")
    assert out["ok"] == 3 and set(out["results"]) == {"tiny-sd", "pipelines:tiny-sd", "pipelines:tiny-sdxl"}
    assert out["results"]["tiny-sd"]["suite"] == "generation" and out["results"]["pipelines:tiny-sd"]["suite"] == "pipelines"


def test_timings_at_detailed_carry_a_note_wherever_they_are_shown(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # detailed writes its kernel traces into ./diffprof-traces
    db = tmp_path / "d.db"
    assert main(["bench", "-s", "steps", "--step-counts", "1", "--profile-level", "detailed", "--model", "tiny-sd", "--width", "32", "--height", "32",
                 "--repeats", "1", "--warmup", "0", "--threads", "1", "--db", str(db), "--report", str(tmp_path / "r.md"), "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "timed at profiler level detailed" in out  # bench's own table
    assert "timed at profiler level detailed" in (tmp_path / "r.md").read_text()  # the report
    assert main(["show", "--db", str(db)]) == 0
    assert "timed at profiler level detailed" in " ".join(capsys.readouterr().out.split())  # show


def test_a_hub_id_that_moved_loads_from_where_it_is_now_and_says_so():
    from diffprof.models.sources import load_pipeline

    with pytest.raises(ModelError) as info:  # HF_HUB_OFFLINE (conftest): the new id is what is looked up
        load_pipeline("runwayml/stable-diffusion-v1-5", "hub")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in info.value.message and "moved" in info.value.message
    assert "--model sd15 --weights synthetic" in (info.value.hint or "")
