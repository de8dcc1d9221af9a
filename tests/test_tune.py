"""diffprof tune: the search on a synthetic model (against brute force over the whole grid),
constraint handling and its messages, and the real thing on tiny-sd driving bench and generate."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.results import CellResult
from diffprof.tune import (
    TUNE_METRICS,
    NoConfigMeetsConstraints,
    Search,
    SearchSpace,
    Setting,
    TuneError,
    TuneResult,
    resolve_metric,
    tune,
)
from diffprof.tune.space import DEFAULT_SCHEDULERS, DEFAULT_STEPS, unet_calls

CPU = torch.device("cpu")
GIB = 2**30
ADHERENCE = TUNE_METRICS["adherence"]


class FakeModel:
    """Synthetic cells: quality rises with steps towards a per-scheduler ceiling (bf16 costs 0.03),
    time is per-step cost x steps + overhead (bf16 and channels_last are faster), bf16 halves memory.

    ``screen_bias`` is added to the quality of screens (scored on fewer prompts); ``fail`` names
    schedulers whose cells fail."""

    CEIL: ClassVar[dict[str, float]] = {"dpmpp_2m": 0.97, "unipc": 0.975, "euler": 0.93, "ddim": 0.95, "pndm": 0.95, "dpmpp_2m_karras": 0.98, "deis": 0.96, "default": 0.955}
    RATE: ClassVar[dict[str, float]] = {"dpmpp_2m": 0.20, "unipc": 0.16, "euler": 0.6, "ddim": 0.9, "pndm": 0.5, "dpmpp_2m_karras": 0.3, "deis": 0.25, "default": 0.5}
    PER_STEP: ClassVar[dict[str, float]] = {"fp32": 0.010, "bf16": 0.006}
    LAYOUT: ClassVar[dict[str, float]] = {"none": 1.0, "channels_last": 0.85}
    MEMORY: ClassVar[dict[str, int]] = {"fp32": 2 * GIB, "bf16": 1 * GIB}

    def __init__(self, screen_bias: float = 0.0, fail: tuple[str, ...] = ()) -> None:
        self.screen_bias = screen_bias
        self.fail = fail
        self.calls: list[tuple[Setting, int]] = []

    def quality(self, s: Setting) -> float:
        return self.CEIL[s.scheduler] - self.RATE[s.scheduler] / s.steps - (0.03 if s.precision == "bf16" else 0.0)

    def time(self, s: Setting) -> float:
        return 0.02 + s.steps * self.PER_STEP[s.precision] * self.LAYOUT[s.optimization]

    def __call__(self, setting: Setting, stage: str, prompts: int) -> CellResult:
        self.calls.append((setting, prompts))
        labels = {"stage": stage, "scheduler": setting.scheduler, "steps": setting.steps}
        if setting.scheduler in self.fail:
            return CellResult("tune", labels, {}, status="failed", error="RuntimeError: boom")
        q = self.quality(setting) + (self.screen_bias if stage == "screen" else 0.0)
        metrics = {"s_per_image": self.time(setting), "adherence": q, "host_peak_rss_bytes": float(self.MEMORY[setting.precision])}
        return CellResult("tune", labels, {"quality": {"prompts": prompts}}, metrics=metrics)


def space(**kw) -> SearchSpace:
    return SearchSpace.for_device(CPU, **kw)


def search(model: FakeModel, sp: SearchSpace | None = None, **kw) -> Search:
    return Search(model, sp or space(), ADHERENCE, prompts=8, screen_prompts=2, **kw)


def brute_force(model: FakeModel, sp: SearchSpace, target: float, max_memory: float | None = None) -> Setting | None:
    """The fastest setting of the whole grid meeting the constraints, by exhaustive evaluation."""
    grid = [Setting(s, n, p, o) for s in sp.schedulers for n in sp.steps for p in sp.precisions for o in sp.optimizations]
    ok = [s for s in grid if model.quality(s) >= target and (max_memory is None or model.MEMORY[s.precision] <= max_memory)]
    return min(ok, key=lambda s: (model.time(s), -model.quality(s)), default=None)


def result_of(outcome, sp: SearchSpace) -> TuneResult:
    return TuneResult.from_outcome(outcome, model="fake", device="cpu", space=sp, prompts=8)


# ---------------------------------------------------------------------------------------------
# The search


def test_default_space_and_baseline():
    sp = space()
    assert sp.schedulers == DEFAULT_SCHEDULERS and sp.steps == DEFAULT_STEPS
    assert sp.precisions == ("fp32", "bf16") and sp.optimizations == ("none", "channels_last") and sp.size == 7 * 9 * 2 * 2
    assert sp.baseline == Setting("default", 50, "fp32", "none")  # the default diffusers setup on a CPU
    assert unet_calls(Setting("heun", 10, "fp32")) == 20 and unet_calls(Setting("euler", 10, "fp32")) == 10
    with pytest.raises(ConfigError, match="fp16 on cpu"):
        space(precisions=["fp16"])
    with pytest.raises(ConfigError, match="unknown scheduler 'eulr'"):
        space(schedulers=["eulr"])
    with pytest.raises(ConfigError, match="model_cpu_offload needs a CUDA device"):
        space(optimizations=["model_cpu_offload"])


@pytest.mark.parametrize("tolerance", [0.0, 0.02, 0.05, 0.1])
def test_search_finds_the_brute_force_optimum_measuring_a_fraction(tolerance):
    model, sp = FakeModel(), space()
    outcome = search(model, tolerance=tolerance).run()
    target = model.quality(sp.baseline) - tolerance
    assert outcome.constraints.target == pytest.approx(target)
    best = brute_force(model, sp, target)
    assert outcome.chosen is not None and outcome.chosen.setting == best
    assert len(model.calls) == len(set(model.calls))  # nothing measured twice
    assert len({s for s, _ in model.calls}) < 0.4 * sp.size
    assert outcome.baseline.setting == sp.baseline and outcome.baseline.stage == "baseline"


def test_screens_short_of_the_floor_by_less_than_the_slack_are_still_confirmed():
    model, sp = FakeModel(screen_bias=-0.04), space()  # subsets score 0.04 low, the slack is 0.05
    outcome = search(model).run()
    assert outcome.chosen.setting == brute_force(model, sp, model.quality(sp.baseline) - 0.02)
    assert all(c.prompts == 8 for c in outcome.candidates if c.feasible)  # chosen on every prompt, never on a screen


def test_memory_cap_picks_the_fastest_that_fits():
    model, sp = FakeModel(), space()
    outcome = search(model, max_memory_bytes=1.5 * GIB).run()
    target = model.quality(sp.baseline) - 0.02
    assert outcome.chosen.setting == brute_force(model, sp, target, 1.5 * GIB)
    assert outcome.chosen.setting.precision == "bf16" and not outcome.baseline.meets_memory


def test_explicit_floor_and_failed_candidates():
    model, sp = FakeModel(fail=("unipc", "dpmpp_2m_karras")), space()
    outcome = search(model, min_quality=0.9).run()
    assert outcome.constraints.target == 0.9
    assert outcome.chosen.setting == brute_force(FakeModel(), space(schedulers=[s for s in DEFAULT_SCHEDULERS if s not in model.fail]), 0.9)
    failed = [c for c in outcome.candidates if not c.ok]
    assert failed and all(c.verdict == "failed" and not c.feasible for c in failed)
    rows = result_of(outcome, sp).rows()
    assert any(r["verdict"] == "failed: RuntimeError: boom" for r in rows)


def test_impossible_quality_names_the_closest_point():
    model, sp = FakeModel(), space()
    outcome = search(model, min_quality=0.999).run()
    assert outcome.chosen is None
    result = result_of(outcome, sp)
    best = max(result.scored, key=lambda c: c.quality)
    assert best.full and best.quality == pytest.approx(0.98 - 0.3 / 50)  # dpmpp_2m_karras at 50 steps, fp32
    err = result.infeasible_error()
    assert isinstance(err, NoConfigMeetsConstraints) and err.result is result and err.exit_code == 2
    assert err.message == f"no config reaches adherence >= 0.999; best is {best.quality:.4g} with dpmpp_2m_karras, 50 steps, fp32 (520 ms/image)"
    assert f"--min-quality {best.quality:.4g} or less" in err.hint
    assert result.speedup is None and result.summary().startswith("no config meets adherence >= 0.999")


def test_impossible_memory_names_the_smallest_point():
    model, sp = FakeModel(), space(precisions=["fp32"])
    result = result_of(search(model, sp, max_memory_bytes=0.5 * GIB).run(), sp)
    assert result.chosen is None
    err = result.infeasible_error()
    assert err.message.startswith("no config fits host_peak_rss_bytes <= 512 MiB; the smallest is 2 GiB with ")
    assert "--max-memory to at least 2 GiB" in err.hint


def test_a_failed_baseline_needs_an_explicit_floor():
    model = FakeModel(fail=("default",))
    with pytest.raises(TuneError) as err:
        search(model).run()
    assert "the baseline (default, 50 steps, fp32) failed" in err.value.message and "--min-quality" in err.value.hint
    assert search(FakeModel(fail=("default",)), min_quality=0.9).run().chosen is not None


def test_result_reports_speedup_front_and_evidence():
    model, sp = FakeModel(), space()
    result = result_of(search(model).run(), sp)
    c, b = result.chosen, result.baseline
    assert result.speedup == pytest.approx(b.seconds_per_image / c.seconds_per_image) and result.speedup > 3
    front = result.front
    assert c in front and all(x.full and x.ok for x in front)
    times = [x.seconds_per_image for x in front]
    assert times == sorted(times) and [x.quality for x in front] == sorted(x.quality for x in front)
    rows = result.rows()
    assert len(rows) == len(result.candidates)
    chosen_row = next(r for r in rows if r["note"] == "◀ chosen")
    assert chosen_row["scheduler"] == c.setting.scheduler and chosen_row["steps"] == str(c.setting.steps)
    assert next(r for r in rows if r["note"] == "baseline")["speedup"] == "1.00x"
    assert f"{result.speedup:.2f}x faster than the baseline" in result.summary()


def test_metric_resolution():
    assert resolve_metric("auto", "shapes-sd").name == "adherence"
    assert resolve_metric("auto", "tiny-sd").name == "psnr_db"
    assert resolve_metric("convergence", "x").name == "psnr_db" and resolve_metric("clip", "x").name == "clip_score"
    assert resolve_metric("latent_rel_error", "x").direction == "lower"
    with pytest.raises(ConfigError) as err:
        resolve_metric("adherance", "x")
    assert "did you mean 'adherence'" in err.value.hint


# ---------------------------------------------------------------------------------------------
# The real thing on tiny-sd (32 px, few steps, one thread)


def tiny_config(tmp_path: Path, **kw) -> RunConfig:
    base = dict(model="tiny-sd", device="cpu", width=32, height=32, threads=1, repeats=1, warmup=0, reference_steps=8, db=str(tmp_path / "t.db"))
    base.update(kw)
    return RunConfig.from_mapping(base)


def tiny_space(**kw) -> SearchSpace:
    args = dict(schedulers=["euler", "dpmpp_2m"], steps=[1, 2, 4], precisions=["fp32"], optimizations=["none"], baseline_steps=8)
    args.update(kw)
    return SearchSpace.for_device(CPU, **args)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, TuneResult, Path]:
    """One real tune on tiny-sd (PSNR against an 8-step reference), its config written as YAML."""
    tmp = tmp_path_factory.mktemp("tune")
    cfg = tiny_config(tmp)
    out = tmp / "tuned.yaml"
    result = tune(cfg, metric="convergence", prompts=2, screen_prompts=1, space=tiny_space(), store=cfg.db, output=out)
    return cfg, result, out


def test_tune_picks_the_fastest_feasible_and_stores_every_candidate(tuned):
    from diffprof.store import Store

    cfg, result, _ = tuned
    d = result.decision
    assert d is not None and result.chosen.setting == d.chosen and result.chosen.feasible
    timed = [c for c in result.candidates if c.feasible and c.setting in d.values]
    assert d.leader == min((c.setting for c in timed), key=lambda s: d.seconds(s))  # the fastest on the rounds timed together
    assert result.constraints.target == pytest.approx(result.baseline.quality - 2.0)  # within 2 dB of the baseline
    assert result.baseline.setting == Setting("default", 8, "fp32") and result.speedup > 1
    assert result.constraints.fidelity is None  # tuning for PSNR holds fidelity itself
    run = Store(cfg.db).get_run(result.run_id)
    assert run.status == "finished" and run.suites() == ["tune"] and run.machine  # the host's state is stored with it
    scored = [c for c in run.cells if c.labels["stage"] != "time"]
    assert len(scored) == len(result.candidates) and {c.labels["stage"] for c in scored} >= {"baseline", "confirm"}
    assert all("psnr_db" in c.metrics for c in scored)
    # the timing rounds: one stored cell per setting timed, holding its per-round values (no quality scored)
    time_cells = {(c.labels["scheduler"], c.labels["steps"]): c for c in run.cells if c.labels["stage"] == "time"}
    assert set(time_cells) == {(s.scheduler, s.steps) for s in d.values} and (d.chosen.scheduler, d.chosen.steps) in time_cells
    assert all(c.rounds["s_per_image"] == d.values[s] for s in d.values for c in [time_cells[(s.scheduler, s.steps)]])
    assert all("psnr_db" not in c.metrics for c in time_cells.values()) and d.rounds >= 3


def test_the_written_config_holds_the_choice(tuned):
    _, result, out = tuned
    text = out.read_text()
    assert text.startswith("# Written by diffprof tune") and "faster than the baseline" in text
    tuned_cfg = RunConfig.load(out)
    s = result.chosen.setting
    assert (tuned_cfg.scheduler, tuned_cfg.steps, tuned_cfg.precision, tuned_cfg.optimize, tuned_cfg.device) == (s.scheduler, s.steps, s.precision, s.switches, "cpu")
    assert tuned_cfg == result.config and tuned_cfg.suites == ["generation"] and tuned_cfg.quality == ["convergence"]
    assert (tuned_cfg.width, tuned_cfg.threads, tuned_cfg.reference_steps) == (32, 1, 8)  # the base config carries over


def test_the_written_config_drives_bench(tuned, tmp_path, capsys):
    from diffprof.cli.app import main
    from diffprof.store import Store

    _, result, out = tuned
    s = result.chosen.setting
    db = tmp_path / "bench.db"
    assert main(["bench", "--config", str(out), "--db", str(db), "--no-report", "--no-progress"]) == 0
    (cell,) = Store(str(db)).get_run("latest").cells
    assert (cell.suite, cell.settings["scheduler"], cell.settings["steps"], cell.settings["width"]) == ("generation", s.scheduler, s.steps, 32)
    assert "psnr_db" in cell.metrics  # scored the way tune held it
    capsys.readouterr()


def test_the_written_config_drives_generate(tuned, tmp_path, capsys):
    from diffprof.cli.app import main

    _, result, out = tuned
    s = result.chosen.setting
    images = tmp_path / "images"
    assert main(["generate", "--config", str(out), "--out", str(images), "--seed", "3"]) == 0  # a flag given still wins
    (sidecar,) = images.glob("*.json")
    meta = json.loads(sidecar.read_text())
    assert (meta["scheduler"], meta["steps"], meta["width"], meta["seed"]) == (s.scheduler, s.steps, 32, 3)
    assert meta["prompt"] == RunConfig.default_of("prompt")  # no PROMPT: the config's
    capsys.readouterr()


def test_cli_tune_impossible_exits_2_naming_the_closest_point(tmp_path, capsys):
    from diffprof.cli.app import main

    args = ["tune", "--model", "tiny-sd", "--device", "cpu", "--threads", "1", "--width", "32", "--height", "32",
            "--schedulers", "euler", "--step-counts", "1,2", "--precisions", "fp32", "--optimizations", "none",
            "--prompts", "2", "--repeats", "1", "--reference-steps", "4", "--metric", "convergence", "--min-quality", "99",
            "--db", str(tmp_path / "t.db"), "--out", str(tmp_path / "t.yaml"), "--no-progress"]
    assert main(args) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "error: no config reaches psnr_db >= 99; best is" in err and "--min-quality" in err
    assert "diffprof tune: tiny-sd on cpu" in captured.out  # the evidence is printed before the error
    assert not (tmp_path / "t.yaml").exists()


def test_cli_tune_writes_the_config_and_prints_the_choice(tmp_path, capsys):
    from diffprof.cli.app import main

    out = tmp_path / "t.json"
    args = ["tune", "--model", "tiny-sd", "--device", "cpu", "--threads", "1", "--width", "32", "--height", "32",
            "--schedulers", "dpmpp_2m", "--step-counts", "1,2", "--precisions", "fp32", "--optimizations", "none",
            "--prompts", "2", "--repeats", "1", "--reference-steps", "4", "--metric", "convergence", "--min-quality", "0",
            "--db", str(tmp_path / "t.db"), "--out", str(out)]
    assert main(args) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "chosen: dpmpp_2m, 1 steps, fp32" in text and "tuned config:" in text
    assert json.loads(out.read_text())["steps"] == 1  # the fastest meeting a floor of 0 dB


def test_tune_rejects_bad_requests_before_measuring(tmp_path):
    cfg = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="needs a CLIP model"):
        tune(cfg, metric="clip", space=tiny_space())
    with pytest.raises(ConfigError, match="cannot write a config to 't.toml'"):
        tune(cfg, output=tmp_path / "t.toml", space=tiny_space())
    with pytest.raises(ConfigError, match="--max-memory must be a positive"):
        tune(cfg, max_memory_gib=0, space=tiny_space())
    assert not (tmp_path / "t.db").exists()  # nothing was stored


def test_written_config_has_no_unknown_keys_and_round_trips(tmp_path):
    from diffprof.tune.result import tuned_config

    model, sp = FakeModel(), space()
    result = result_of(search(model).run(), sp)
    result.device = "cpu"
    base = RunConfig.from_mapping({"width": 64, "prompt": "a small red circle in the center on a blue background", "db": "t.db", "report": "t.html"})
    cfg = tuned_config(base, result)
    # the tuning run's store and report are not pinned into the config a later bench runs
    assert (cfg.db, cfg.report) == (RunConfig.default_of("db"), RunConfig.default_of("report"))
    path = cfg.save(tmp_path / "c.yaml")
    assert RunConfig.load(path) == cfg and cfg.prompt.startswith("a small red") and cfg.width == 64
    assert math.isfinite(result.chosen.quality)


def test_summary_says_when_the_chosen_setting_ran_without_its_cuda_graph():
    """Its time is an eager loop's: the summary must not let it pass for a graphed one."""
    result = result_of(search(FakeModel()).run(), space())
    assert "CUDA graph" not in result.summary()
    result.chosen.cell.settings["fast_path_note"] = "scheduler unipc is not graph-safe; ran the loop eagerly"
    assert result.summary().splitlines()[-1] == "note: the chosen setting did not run as its optimizations asked: scheduler unipc is not graph-safe; ran the loop eagerly"


def test_cli_tune_of_a_model_that_cannot_load_says_so_before_recording_a_run(tmp_path, capsys):
    """It used to measure a failing baseline, then hint at --min-quality and store an interrupted run."""
    from diffprof.cli.app import main
    from diffprof.store import Store

    db = tmp_path / "t.db"
    assert main(["tune", "--model", "nosuch", "--device", "cpu", "--threads", "1", "--db", str(db), "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown model 'nosuch'" in err and "--min-quality" not in err
    assert not db.exists() or Store(db).list_runs() == []


# ---------------------------------------------------------------------------------------------
# Candidates go through the executors, like a sweep's cells


class RecordingExecutor:
    """The serial executor, noting every cell it is handed and how often it is started."""

    def __init__(self, config: RunConfig) -> None:
        from diffprof.suites.executors.serial import SerialExecutor

        self.inner = SerialExecutor(config)
        self.name, self.parallel = "recording", False
        self.cells: list = []
        self.started = 0

    def check(self) -> None:
        self.inner.check()

    def execute(self, cells, listener):
        self.started += 1
        for cell, result in self.inner.execute(cells, listener):
            self.cells.append(cell)
            yield cell, result


def small_tune(cfg: RunConfig, **kw):
    space = tiny_space(schedulers=["euler"], steps=[1, 2], baseline_steps=4)
    return tune(replace(cfg, reference_steps=4), metric="convergence", prompts=2, screen_prompts=1, space=space, store=cfg.db, **kw)


def evidence(result: TuneResult) -> list[tuple]:
    return [(c.stage, c.setting, c.prompts, c.ok, c.quality) for c in result.candidates]


def test_tune_hands_every_candidate_to_the_executor_it_is_given(tmp_path):
    from diffprof.store import Store

    cfg = tiny_config(tmp_path)
    executor = RecordingExecutor(cfg)
    result = small_tune(cfg, executor=executor)
    assert executor.started == 1  # one executor run for the whole search and its timing rounds: its engine stays loaded
    searched = [c for c in executor.cells if c.labels["stage"] != "time"]
    assert [c.labels for c in searched] == [c.cell.labels for c in result.candidates]
    assert [c.cell.settings["engine_reused"] for c in result.candidates] == [False] + [True] * (len(result.candidates) - 1)
    rounds = [c for c in executor.cells if c.labels["stage"] == "time"]
    assert executor.cells[len(searched):] == rounds and all(c.round is not None for c in rounds)  # then the rounds, one at a time
    run = Store(cfg.db).get_run(result.run_id)
    assert run.status == "finished" and [c.cell_key for c in run.cells][: len(searched)] == [c.key for c in searched]  # stored under the asked-for keys
    assert len(run.cells) == len(searched) + len(result.decision.values)  # each setting's rounds merged into one stored cell


def test_tune_through_the_local_executor_gives_the_serial_evidence(tmp_path):
    """Candidates measured in a worker process (the local executor, 2 CPU workers) score what they
    score in this one: same stages, settings, prompts and quality, every cell from that worker."""
    serial = small_tune(tiny_config(tmp_path / "serial"))
    local_cfg = replace(tiny_config(tmp_path / "local"), executor="local", workers=2)
    local = small_tune(local_cfg)
    assert evidence(local) == evidence(serial) and len(local.candidates) >= 2
    assert {c.cell.settings["worker"] for c in local.candidates} == {"cpu0"}  # one cell at a time: one worker, its engine reused
    assert [c.cell.settings["engine_reused"] for c in local.candidates][1:] == [True] * (len(local.candidates) - 1)
