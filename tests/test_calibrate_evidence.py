"""calibrate decides on the same evidence as compare (issue 17): each cell checked against the fit of
the others and re-measured when it disagrees, the host's load recorded and a busy calibration
refused (or kept with --force, loudly), prediction intervals that never include zero time.
Synthetic calibrations (the analytic architecture of test_estimate.py) and a synthetic executor;
the CLI on tiny-sd with a simulated machine state."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stdout
from dataclasses import replace

import numpy as np
import pytest
from conftest import simulated_host
from test_estimate import PLAN, FakeArchitecture, make_calibration, true_times

from diffprof.config import RunConfig
from diffprof.engine.switches import Optimizations
from diffprof.estimate import Estimator, Workload
from diffprof.estimate.calibration import Calibration, calibrations
from diffprof.estimate.model import CostModel
from diffprof.estimate.outliers import FLOOR, check_outliers
from diffprof.estimate.regression import log_interval
from diffprof.results import CALIBRATION_NOTE, CellResult
from diffprof.store import Store
from diffprof.suites.executors.base import Executor


def spiked(cal: Calibration, label: str, factor: float) -> Calibration:
    """``cal`` with one cell's every time ``factor`` x (a busy minute on that cell alone)."""
    points = [replace(p, call_s=p.call_s * factor, step_s=p.step_s * factor, text_s=p.text_s * factor, vae_s=p.vae_s * factor,
                      other_s=p.other_s * factor) if p.label == label else p for p in cal.points]
    return replace(cal, points=points)


# ---------------------------------------------------------------------------------------------
# Intervals


def test_log_intervals_never_reach_zero_and_match_the_linear_ones_when_narrow():
    for mean, sd in ((0.04, 0.1), (0.04, 0.04), (0.04, 0.2), (1e-4, 1.0), (3.0, 30.0)):
        low, high = log_interval(mean, sd**2, 2.0)
        assert 0 < low < mean < high and low * high == pytest.approx(mean**2 * 1.0, rel=1e-9)  # x/÷ the same factor
    assert log_interval(0.0, 0.0, 2.0) == (0.0, 0.0)
    low, high = log_interval(1.0, 0.01**2, 2.0)  # a 1% spread: the linear mean ± 2 sd
    assert low == pytest.approx(0.98, abs=5e-4) and high == pytest.approx(1.02, abs=5e-4)


def test_a_loose_calibration_predicts_intervals_above_zero_for_every_part():
    """A calibration scattered by 60% (what a busy host gave in issue 17, whose intervals were clamped at 0)."""
    for seed in range(10):
        model = CostModel.fit(make_calibration(noise=0.6, seed=seed), FakeArchitecture())  # type: ignore[arg-type]
        for w in (Workload(32, 32, 2, 1), Workload(96, 96, 50, 4), Workload(160, 160, 20, 2)):
            e = model.predict(w)
            assert 0 < e.call_interval.low < e.call_s < e.call_interval.high
            assert 0 < e.interval.low and 0 < e.peak_interval.low
            assert all(c.interval is None or c.interval.low > 0 for c in e.components if c.seconds > 0)


# ---------------------------------------------------------------------------------------------
# Outliers


def test_the_issues_spiked_cell_is_found_and_only_it():
    """64x64 at 4x (237 ms against 96x96's 62 ms in the issue): flagged; every other cell agrees."""
    cal = spiked(make_calibration(noise=0.02, seed=3), "64x64 b1", 4.0)
    check = check_outliers(cal, FakeArchitecture())
    assert [r.label for r in check.outliers] == ["64x64 b1"]
    assert check.outliers[0].ratio == pytest.approx(4.0, rel=0.15)
    assert PLAN.index((64, 1)) not in check.kept and len(check.kept) == len(PLAN) - 1
    # and the fit of the others judges a re-measurement of it as agreeing
    clean = make_calibration(noise=0.02, seed=3).points[PLAN.index((64, 1))]
    assert not check.judge(clean).outlier and check.judge(cal.points[PLAN.index((64, 1))]).outlier


@pytest.mark.parametrize("seed", range(8))
def test_a_quiet_calibration_has_no_outliers(seed):
    check = check_outliers(make_calibration(noise=0.05, seed=seed), FakeArchitecture())
    assert check.outliers == [] and len(check.kept) == len(PLAN)
    assert all(limit >= FLOOR for limit in check.limits)


def test_too_few_cells_are_not_judged():
    cal = make_calibration(plan=[(32, 1), (64, 1), (96, 1)])
    check = check_outliers(spiked(cal, "64x64 b1", 5.0), FakeArchitecture())
    assert check.outliers == [] and all(math.isinf(limit) for limit in check.limits)


def test_a_spiked_cell_flattens_the_fit_and_its_retake_restores_it():
    """What the outlier check protects: extrapolating to 4x the largest size, the spiked fit is far
    off; with the cell re-measured it is back within a few percent."""
    arch = FakeArchitecture()
    truth = make_calibration()
    far = Workload(384, 384, 20, 1)
    t = true_times(arch.features(far, "fp32", Optimizations()))
    true_call = t["text"] + (20 + 1) * t["step"] + t["vae"] + t["other"]
    bad = CostModel.fit(spiked(truth, "64x64 b1", 4.0), arch).predict(far).call_s  # type: ignore[arg-type]
    good = CostModel.fit(truth, arch).predict(far).call_s  # type: ignore[arg-type]
    assert abs(bad / true_call - 1) > 0.3 and good == pytest.approx(true_call, rel=0.02)


# ---------------------------------------------------------------------------------------------
# calibrate's flow on a synthetic executor: measure, check, re-measure, store both


class Synthetic(Executor):
    """Cells timed by the analytic laws; ``spikes`` multiplies the first measurement of a label's cell."""

    name, parallel = "synthetic", False

    def __init__(self, config: RunConfig, spikes: dict[str, float]) -> None:
        super().__init__(config)
        self.spikes = dict(spikes)
        self.measured: list[str] = []

    def execute(self, cells, listener):
        i = 0
        while i < len(cells):
            cell = cells[i]
            i += 1
            c = cell.config
            label = f"{c.width}x{c.height} b{c.batch}"
            self.measured.append(label)
            factor = self.spikes.pop(label, 1.0)
            w = Workload(c.width, c.height, c.steps, c.batch)
            t = {k: v * factor for k, v in true_times(FakeArchitecture().features(w, "fp32", Optimizations())).items()}
            evals = c.steps + 1
            call = t["text"] + evals * t["step"] + t["vae"] + t["other"]
            settings = {"model": c.model, "device": "cpu", "precision": "fp32", "optimizations": "none", "task": "txt2img", "scheduler": "default (pndm)",
                        "steps": c.steps, "guidance": c.guidance, "width": c.width, "height": c.height, "batch": c.batch}
            metrics = {"s_per_call": call, "s_per_image": call / c.batch, "step_median_s": t["step"], "unet_evals": float(evals),
                       "text_encode_s": t["text"], "vae_decode_s": t["vae"], "load_s": 0.5, "host_peak_rss_bytes": 5e8}
            samples = {"call_s": [call], "step_s": [t["step"]] * evals, "text_encode_s": [t["text"]], "vae_decode_s": [t["vae"]]}
            yield cell, CellResult(cell.suite, cell.labels, settings, metrics=metrics, samples=samples)


@pytest.fixture
def fake_arch(monkeypatch):
    from diffprof.estimate import architecture

    from diffprof.estimate import memory_check

    monkeypatch.setattr(architecture.Architecture, "for_model", classmethod(lambda cls, model: FakeArchitecture()))
    monkeypatch.setattr(memory_check, "forecast", lambda config, device: None)  # it traces the real model, which this one stands in for


def calibration_config(tmp_path, **kw) -> RunConfig:
    return RunConfig.from_mapping({"model": "tiny-sd", "device": "cpu", "suites": ["calibration"], "steps": 4, "repeats": 1, "rounds": 1,
                                   "warmup": 0, "db": str(tmp_path / "cal.db"), **kw})


def test_calibrate_remeasures_the_spiked_cell_keeps_the_agreeing_measurement_and_records_both(tmp_path, fake_arch):
    from diffprof.suites.recalibrate import calibrate

    cfg = calibration_config(tmp_path)
    executor = Synthetic(cfg, {"64x64 b1": 4.0})
    with Store(cfg.db) as store, simulated_host(0.0):
        outcome = calibrate(cfg, store, executor=executor, progress=False, architecture=FakeArchitecture())
        run = store.get_run(outcome.run_id)
        (cal,) = calibrations(store).values()  # a quiet host: estimate uses it
    assert executor.measured.count("64x64 b1") == 2 and len(executor.measured) == len(PLAN) + 1  # only the outlier again
    (retake,) = outcome.retakes
    assert retake.kept == "second" and retake.agrees and retake.first.ratio == pytest.approx(4.0, rel=0.1)
    (cell,) = [c for c in run.cells if c.labels == {"width": 64, "height": 64, "batch": 1}]
    assert len(run.cells) == len(PLAN)  # one cell per workload: the other measurement lives in its settings
    assert "measured twice" in cell.settings[CALIBRATION_NOTE] and "agrees, and the second is used" in cell.settings[CALIBRATION_NOTE]
    assert cell.settings["retake"]["measurement"] == "first" and cell.settings["retake"]["s_per_call"] == pytest.approx(4 * cell.metrics["s_per_call"])
    point = next(p for p in cal.points if p.label == "64x64 b1")
    assert point.call_s == pytest.approx(cell.metrics["s_per_call"])
    assert run.machine["sessions"] == 2  # the retake's host state is a second session of the run
    assert not outcome.load.busy


def test_a_cell_that_disagrees_twice_keeps_the_closer_and_says_the_model_may_not_describe_it(tmp_path, fake_arch):
    from diffprof.suites.recalibrate import calibrate

    cfg = calibration_config(tmp_path)

    class Twice(Synthetic):
        def execute(self, cells, listener):
            for cell, result in super().execute(cells, listener):
                if (cell.config.width, cell.config.batch) == (64, 1):
                    self.spikes["64x64 b1"] = 3.0  # the second measurement is slow too, a little less
                yield cell, result

    with Store(cfg.db) as store, simulated_host(0.0):
        outcome = calibrate(cfg, store, executor=Twice(cfg, {"64x64 b1": 4.0}), progress=False, architecture=FakeArchitecture())
        warnings = Estimator.from_store(store, model="tiny-sd", device="cpu", precision="fp32").predict(64, 64, 20).warnings
    (retake,) = outcome.retakes
    assert retake.kept == "second" and not retake.agrees and "disagrees too" in retake.note and "may not describe" in retake.note
    assert any("64x64 b1 disagreed with the other cells' fit when measured twice" in w for w in warnings)  # every estimate says so


def test_a_busy_host_keeps_a_calibration_out_of_estimate_unless_forced(tmp_path, fake_arch):
    from diffprof.errors import StoreError
    from diffprof.suites.recalibrate import calibrate

    cfg = calibration_config(tmp_path)
    with Store(cfg.db) as store:
        with simulated_host(1.0):  # a busy loop on the core the run left free
            outcome = calibrate(cfg, store, executor=Synthetic(cfg, {}), progress=False, architecture=FakeArchitecture())
        assert outcome.load.busy and "other processes took 1.00 of 2 cores" in outcome.load.reason
        assert calibrations(store) == {} and len(calibrations(store, busy=True)) == 1
        with pytest.raises(StoreError) as err:
            Estimator.from_store(store, model="tiny-sd", device="cpu", precision="fp32")
        assert f"run {outcome.run_id} was measured on a busy host" in err.value.message and f"--run {outcome.run_id}" in err.value.hint
        used = Estimator.from_store(store, model="tiny-sd", device="cpu", precision="fp32", run=outcome.run_id)  # asked for by name: used, and said
        assert any("calibrated on a busy host" in w for w in used.predict(64, 64, 20).warnings)
        with simulated_host(1.0):  # the same with --force (the run's config says so): used by default, every estimate warns
            forced = calibrate(replace(cfg, force=True), store, executor=Synthetic(cfg, {}), progress=False, architecture=FakeArchitecture())
        est = Estimator.from_store(store, model="tiny-sd", device="cpu", precision="fp32")
        assert est.model.calibration.run_id == forced.run_id
        assert any("calibrated on a busy host" in w and "recalibrate on a quiet host" in w for w in est.predict(64, 64, 20).warnings)


# ---------------------------------------------------------------------------------------------
# The CLI on tiny-sd


def cli_calibrate(db: str, *extra: str) -> tuple[int, str]:
    from diffprof.cli.app import main

    with redirect_stdout(io.StringIO()) as out:
        code = main(["calibrate", "--model", "tiny-sd", "--device", "cpu", "--threads", "1", "--resolutions", "32,48", "--batch-sizes", "1,2",
                     "--steps", "2", "--repeats", "2", "--warmup", "0", "--no-isolate", "--no-progress", "--db", db, *extra])
    return code, out.getvalue()


def test_cli_calibrate_refuses_a_busy_host_naming_force_and_keeps_the_cells(tmp_path, capsys):
    db = str(tmp_path / "cal.db")
    with simulated_host(1.5):
        code, _ = cli_calibrate(db)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "error: the host was busy during calibration run 1: other processes took 1.50 of 2 cores" in err
    assert "hint:" in err and "--force" in err and "--run 1" in err
    with Store(db) as store:
        assert [c.ok for c in store.get_run(1).cells] == [True] * 4  # measured and stored, not lost
    with simulated_host(1.5):
        code, out = cli_calibrate(db, "--force")
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0 and "warning: the host was busy during calibration run 2" in err and "Kept because of --force" in err
    assert "host: others 1.50 cores" in err


def test_cli_estimate_takes_a_scheduler_and_a_task(tmp_path, capsys):
    from diffprof.cli.app import main

    db = str(tmp_path / "cal.db")
    with simulated_host(0.0):
        assert cli_calibrate(db)[0] == 0
    capsys.readouterr()

    def estimate(*args: str) -> dict:
        import json

        assert main(["estimate", "--model", "tiny-sd", "--width", "48", "--height", "48", "--steps", "20", "--db", db, "--format", "json", *args]) == 0
        return json.loads(capsys.readouterr().out)

    plain, heun = estimate(), estimate("--scheduler", "heun")
    parts = {e: {c["name"]: c for c in x["components"]} for e, x in (("plain", plain), ("heun", heun))}
    assert parts["plain"]["denoise"]["detail"].startswith("21 denoiser calls")  # PNDM: one more than the steps, as measured
    assert parts["heun"]["denoise"]["detail"].startswith("39 denoiser calls")  # Heun: 2 per step but the last
    assert parts["heun"]["denoise"]["seconds"] == pytest.approx(parts["plain"]["denoise"]["seconds"] * 39 / 21)
    assert "heun" in parts["heun"]["denoise"]["source"] and parts["plain"]["denoise"]["source"] == "measured"
    img = estimate("--task", "img2img", "--strength", "0.5")
    c = {x["name"]: x for x in img["components"]}
    assert c["denoise"]["detail"].startswith("11 denoiser calls") and "strength 0.5" in c["denoise"]["source"]  # the last 10 steps, PNDM's +1
    assert c["vae_encode"]["seconds"] > 0 and c["vae_encode"]["detail"] == "1 encoder call(s) at batch 1" and c["vae_encode"]["interval"]["low"] > 0
    assert img["workload"]["task"] == "img2img" and img["call_s"] < plain["call_s"]
    inpaint = {x["name"]: x for x in estimate("--task", "inpaint")["components"]}
    assert inpaint["vae_encode"]["detail"] == "2 encoder call(s) at batch 1"  # a 4-channel UNet: the image and the masked image


@pytest.mark.parametrize("args, fragment, hint", [
    (["--scheduler", "huen"], "unknown scheduler 'huen'", "did you mean 'heun'"),
    (["--scheduler", "flow_euler"], "flow-matching solver", "noise-schedule schedulers for tiny-sd"),
    (["--task", "img2im"], "unknown task 'img2im'", "did you mean 'img2img'"),
    (["--strength", "0.5"], "--strength 0.5 applies to img2img and inpaint", "--task img2img"),
    (["--task", "img2img", "--strength", "1.5"], "strength", "(0, 1]"),
    (["--model", "tiny-sd-inpaint", "--task", "txt2img"], "only runs --task inpaint", "--task inpaint"),
])
def test_cli_estimate_refuses_what_the_model_cannot_run_and_says_what_can(args, fragment, hint, tmp_path, capsys):
    from diffprof.cli.app import main

    code = main(["estimate", "--model", "tiny-sd", "--db", str(tmp_path / "none.db"), *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and fragment in err and hint in err and "does not exist" not in err  # refused before the store is read


def test_denoiser_calls_follow_the_scheduler_and_strength_without_a_config():
    """The analytic architecture has no scheduler config: the registry's evaluations per step."""
    model = CostModel.fit(make_calibration(), FakeArchitecture())  # type: ignore[arg-type]
    calls = {s: int(model.predict(Workload(64, 64, 20, 1, scheduler=s)).component("denoise").detail.split()[0]) for s in ("default", "euler", "heun", "dpm2")}
    assert calls == {"default": 21, "euler": 20, "heun": 40, "dpm2": 40}
    e = model.predict(Workload(64, 64, 20, 1, task="img2img", strength=0.5))
    assert e.component("denoise").detail.startswith("11 denoiser calls")
    assert "vae_encode" not in [c.name for c in e.components]  # the analytic architecture has no VAE encoder to count
    assert np.isfinite(e.call_s)


def test_an_inpainting_model_calibrates_on_inpaint_calls_and_estimates_its_encodes_from_them(tmp_path, capsys):
    """A 9-channel UNet runs inpainting only: its calibration cells are inpaint calls at strength 1,
    whose VAE encodes (the masked image) are measured and fitted; its estimates default to inpaint."""
    import json

    from diffprof.cli.app import main

    db = str(tmp_path / "inpaint.db")
    with simulated_host(0.0), redirect_stdout(io.StringIO()):
        code = main(["calibrate", "--model", "tiny-sd-inpaint", "--device", "cpu", "--threads", "1", "--resolutions", "32,48", "--batch-sizes", "1,2",
                     "--steps", "2", "--repeats", "2", "--warmup", "0", "--no-isolate", "--no-progress", "--db", db])
    assert code == 0
    with Store(db) as store:
        cells = store.get_run(1).cells
    assert {(c.settings["task"], c.settings.get("strength")) for c in cells} == {("inpaint", 1.0)} and all("vae_encode_s" in c.metrics for c in cells)
    capsys.readouterr()
    assert main(["estimate", "--model", "tiny-sd-inpaint", "--width", "40", "--height", "40", "--steps", "10", "--db", db, "--format", "json"]) == 0
    e = json.loads(capsys.readouterr().out)
    parts = {c["name"]: c for c in e["components"]}
    assert e["workload"]["task"] == "inpaint" and e["workload"]["strength"] == 0.75
    assert parts["vae_encode"]["source"] == "measured" and parts["vae_encode"]["detail"] == "2 encoder call(s) at batch 1"  # strength < 1: the image too
    assert parts["denoise"]["detail"].startswith("8 denoiser calls")  # the last 7.5 -> 7 of 10 PNDM steps, and its extra one
