"""The GPU benchmark scripts write their figures into docs/benchmarks.md: their tables render from
measured rows, and a run that fails still leaves a section saying so (run here without a GPU)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffprof.report.sections import begin_marker, end_marker

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_e2e_section_gives_speedups_against_eager_and_the_compile_recipe():
    e2e = load("gpu_e2e")
    row = dict(loop_s=0.9, vae_s=0.1, total_s=1.0, first_call_s=2.0, peak_bytes=2**31, latent_rel_err=0.0, speedup=1.0)
    rows = {"diffusers eager fp16": row,
            "diffusers + compile (default)": dict(row, total_s=0.5, loop_s=0.45, speedup=2.0, latent_rel_err=1.5e-3),
            "diffprof fast": dict(row, total_s=0.25, loop_s=0.2, speedup=4.0, latent_rel_err=1.4e-3, first_call_s=None)}
    text = e2e.markdown(rows, 50, {"median_rel_diff": 0.0016, "max_rel_diff": 0.0023, "gpu_step_ms": 6.2, "wall_step_ms": 6.21}, "python3 benchmarks/gpu_e2e.py")
    lines = text.splitlines()
    assert lines[0].startswith("_Written by `python3 benchmarks/gpu_e2e.py` on ")
    assert "| diffprof fast | 0.250 | 0.200 | 250.0 | 100.0 | - | 2.00 | 4.00x | 2.00x | 1.40e-03 |" in lines
    assert "| diffusers eager fp16 | 1.000 | 0.900 | 55.6 | 100.0 | 2.0 | 2.00 | 1.00x | 0.50x | 0.00e+00 |" in lines
    assert "median difference 0.16%, max 0.23%" in text
    lone = e2e.markdown({"diffprof fast": dict(rows["diffprof fast"], speedup=math.nan, latent_rel_err=math.nan)}, 50, None, "x")
    assert "| diffprof fast | 0.250 | 0.200 | 250.0 | 100.0 | - | 2.00 | - | - | - |" in lone


def test_profile_section_gives_overhead_components_mfu_and_kernels():
    prof = load("gpu_profile")
    def level(median_s, pct, lo, hi, accounted):
        return dict(median_s=median_s, pct=pct, lo=lo, hi=hi, ops=55, accounted=accounted)

    levels = {"off": level(0.3451, 0.0, 0.0, 0.0, 0.0), "minimal": level(0.3452, 0.03, -0.1, 0.12, 0.0004), "standard": level(0.3457, 0.18, 0.05, 0.3, 0.0123)}
    path = {"first_call_s": 60.0, "levels": levels, "detailed_s": 0.728,
            "components": dict(text_ms=5.1, loop_ms=312.0, step_ms=6.25, vae_ms=7.9, total_ms=330.0), "tflop_per_step": 1.607, "tflops": 257.1, "mfu": 0.338}
    text = prof.markdown({"peaks": "bf16 747 TFLOP/s, fp16 715 TFLOP/s, copy 2,908 GB/s", "rounds": 21, "paths": {"fast": path},
                          "kernels": [("cudnn_flash_fprop", 0.13, 800), ("x" * 120, 0.05, 50)]}, "python3 benchmarks/gpu_profile.py")
    assert "| fast | 60.0 | 345.1 | +0.03% [-0.10, +0.12] | 0.000% | +0.18% [+0.05, +0.30] | 0.012% | 728 ms |" in text
    assert "| fast | 5.1 | 312.0 | 6.25 | 7.9 | 330.0 | 1.607 | 257 | **33.8%** |" in text
    assert "| `cudnn_flash_fprop` | 13.0% | 800 |" in text and "x" * 87 + "..." in text
    assert "median of 21 paired ratios" in text and "fp16 715 TFLOP/s" in text
    del path["detailed_s"]  # written before the kernel captures, which run last
    early = prof.markdown({"peaks": "x", "rounds": 21, "paths": {"fast": path}}, "python3 benchmarks/gpu_profile.py")
    assert "| fast | 60.0 | 345.1 | +0.03% [-0.10, +0.12] | 0.000% | +0.18% [+0.05, +0.30] | 0.012% | - |" in early


@pytest.mark.slow  # the script's two child processes import torch and diffusers
def test_warm_start_writes_its_section_even_when_the_processes_fail(tmp_path, monkeypatch):
    """Without a GPU both child processes fail; the section still names each process and why.
    The script's parent runs in this process (its own process is not what is tested); the two
    children it starts are real processes."""
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n")
    for k, v in dict(OUT=str(tmp_path), CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
                     PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])).items():
        monkeypatch.setenv(k, v)
    warm = load("gpu_warm_start")
    monkeypatch.setattr(sys, "argv", [str(BENCH / "gpu_warm_start.py"), "--model", "sd15", "--optimize", "fast,compile_regions", "--doc", str(doc)])
    with pytest.raises(SystemExit) as exit_:
        warm.main()
    assert exit_.value.code == 1
    text = doc.read_text()
    key = "warm-start-sd15-fast-compile_regions"
    section = text[text.index(begin_marker(key)):text.index(end_marker(key))]
    assert text.startswith("# Benchmarks\n") and "`-O fast,compile_regions`" in section
    assert section.count("| failed: diffprof.errors.ConfigError: device cuda was asked for") == 2 and "| cold |" in section and "| warm |" in section


@pytest.mark.parametrize("script", ["gpu_e2e", "gpu_profile", "gpu_warm_start"])
def test_gpu_scripts_document_their_doc_option(script, monkeypatch, capsys):
    module = load(script)
    monkeypatch.setattr(sys, "argv", [str(BENCH / f"{script}.py"), "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0 and "--doc" in capsys.readouterr().out


def test_profile_overhead_rounds_rotate_the_order_of_levels(monkeypatch):
    """A level that always ran third would carry any drift along the round as its 'overhead'."""
    import torch

    import diffprof.profiler

    prof = load("gpu_profile")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)

    class Profiler:  # the level is all the loop needs; a real one wants a GPU
        def __init__(self, level, **kwargs):
            self.level = level

        def reset(self):
            pass

        @property
        def records(self):
            return [self.level] * 2

    monkeypatch.setattr(diffprof.profiler, "Profiler", Profiler)

    class Engine:
        def __init__(self):
            self.order: list[str] = []

        def set_profiler(self, profiler):
            self.level = profiler.level

        def generate(self, **kwargs):
            self.order.append(self.level)

    engine = Engine()
    out = prof.interleaved(engine, {}, ["off", "minimal", "standard"], 3)
    timed = engine.order[3:]  # after one warm-up call per level
    assert [timed[i * 3] for i in range(3)] == ["off", "minimal", "standard"]  # each level leads one round
    assert sorted(timed) == sorted(["off", "minimal", "standard"] * 3) and set(out) == {"off", "minimal", "standard"}
    assert all(row[4] == 2 for row in out.values())  # operations per call, read after the call


def test_profile_overhead_interval_separates_a_real_cost_from_drift():
    """A constant +2% with +-0.1% jitter gives a tight interval around +2%; drift of +-5% around
    no cost gives a wide one that straddles zero, which the page then shows instead of a bare median."""
    import numpy as np

    prof = load("gpu_profile")
    rng = np.random.default_rng(1)
    base = list(1.0 + rng.normal(0, 0.05, 21))
    real = [b * 1.02 * (1 + e) for b, e in zip(base, rng.normal(0, 0.001, 21))]
    pct, lo, hi = prof.paired_overhead(real, base)
    assert 1.9 < lo <= pct <= hi < 2.1
    noise = list(1.0 + rng.normal(0, 0.05, 21))
    pct, lo, hi = prof.paired_overhead(noise, base)
    assert lo < 0 < hi and hi - lo > 2


def test_profile_own_cost_is_per_operation_cost_times_operations(monkeypatch):
    import diffprof.profiler

    prof = load("gpu_profile")
    monkeypatch.setattr(diffprof.profiler, "measure_overhead", lambda level, device: {"minimal": 2_000.0, "standard": 20_000.0}[level])
    assert prof.accounted("standard", 55, 0.35) == pytest.approx(100 * 20e-6 * 55 / 0.35)
    assert prof.accounted("minimal", 55, 0.35) == pytest.approx(100 * 2e-6 * 55 / 0.35)


def test_compare_calibration_counts_false_alarms_detections_and_inconclusive_pairs():
    from types import SimpleNamespace

    cal = load("compare_calibration")
    args = SimpleNamespace(pairs=4, detect=4, busy_every=2, slow_label="", base="-s schedulers", slow="--steps 9", busy_cores=1,
                           busy_seconds=0.0, threshold=0.05, correction="bh")
    assert cal.plan(args) == [("A/A", ""), ("A/A", "A"), ("A/A", ""), ("A/A", "B"), ("slowdown", ""), ("slowdown", "A"), ("slowdown", ""), ("slowdown", "B")]
    def comparison(*verdicts, regression=False):
        return SimpleNamespace(cells=[SimpleNamespace(verdict=v) for v in verdicts], has_regression=regression)
    assert cal.classify("A/A", comparison("same", "regression", regression=True)) == "false alarm"
    assert cal.classify("A/A", comparison("same", "too noisy")) == "inconclusive" and cal.classify("A/A", comparison("same")) == "clean"
    assert cal.classify("slowdown", comparison("regression", regression=True)) == "flagged"
    assert cal.classify("slowdown", comparison("host busy")) == "inconclusive" and cal.classify("slowdown", comparison("same")) == "missed"
    pairs = [cal.Pair("A/A", 1, 2, "", {"gate": "clean"}), cal.Pair("A/A", 3, 4, "A", {"gate": "false alarm"}),
             cal.Pair("slowdown", 5, 6, "", {"gate": "flagged"}, needs=""), cal.Pair("slowdown", 7, 8, "B", {"gate": "inconclusive"}, needs="up to 9 rounds")]
    rows = cal.rates(pairs, "gate")
    assert ["A/A", "busy", "1", "1 (100%)", "1 false alarm"] in rows and ["A/A", "all", "2", "1 (50%)", "1 false alarm, 1 clean"] in rows
    assert ["slowdown", "idle", "1", "1 (100%)", "1 flagged"] in rows and ["slowdown", "busy", "1", "0 (0%)", "1 inconclusive"] in rows
    from diffprof.results import CellResult, RunInfo

    run = RunInfo(1, "t", None, "finished", "", {}, {}, [CellResult("steps", {"steps": 50}, {}), CellResult("steps", {"steps": 51}, {})])
    assert [c.labels for c in cal.relabel(run, "steps", "51", to="50").cells] == [{"steps": 50}]  # B's 51 steps, named as A's 50
    assert [c.labels for c in cal.relabel(run, "steps", "50").cells] == [{"steps": 50}]


def test_the_suite_timer_accounts_each_test_and_sums_them_per_module(tmp_path):
    """benchmarks/suite_time.py's plugin writes a line per test (wall, own CPU, children's CPU)
    and by_module sums them: a test that burns CPU shows it as its own, one that waits on a child
    process shows the child's."""
    timer = load("suite_time")
    (tmp_path / "test_sample.py").write_text(
        "import subprocess, sys, time\n"
        "def test_burns():\n    t = time.process_time()\n    while time.process_time() - t < 0.3: pass\n"
        "def test_waits():\n    subprocess.run([sys.executable, '-c', 'import time; t = time.process_time()\\nwhile time.process_time() - t < 0.3: pass'], check=True)\n")
    out = tmp_path / "acct.jsonl"
    cmd, env = timer.pytest_command(["-p", "no:xdist", "-p", "no:cov", str(tmp_path / "test_sample.py")], out)
    cmd[0] = sys.executable
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120).returncode == 0
    rows = {r["test"].split("::")[1]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["test_burns"]["self_cpu_s"] >= 0.25 and rows["test_burns"]["child_cpu_s"] < 0.05
    assert rows["test_waits"]["child_cpu_s"] >= 0.25 and rows["test_waits"]["wall_s"] >= rows["test_waits"]["child_cpu_s"] * 0.9
    (module,) = timer.by_module(out).values()
    assert module[0] == 2 and module[1] == pytest.approx(sum(r["wall_s"] for r in rows.values()))
