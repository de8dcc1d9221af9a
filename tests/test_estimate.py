"""Cost model, budget answers and the store-backed Estimator on synthetic calibrations.

A fake architecture with analytic FLOPs, activations and weights stands in for the meta-device
tracer (tested in test_estimate_trace.py), so calibrations can be generated from known laws and the
fit must give those laws back.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from diffprof.engine.switches import Optimizations
from diffprof.errors import ConfigError, StoreError
from diffprof.estimate import Estimator, Workload
from diffprof.estimate.architecture import Features, Phase
from diffprof.estimate.calibration import Calibration, CalibrationKey, CalibrationPoint
from diffprof.estimate.model import H2D_BYTES_PER_S, CostModel
from diffprof.results import CellResult
from diffprof.store import Store

TILE = 64 * 64
W_TEXT, W_UNET, W_VAE, LAYER = 1e6, 8e6, 2e6, 5e5


class FakeArchitecture:
    """Analytic stand-in: costs grow with pixels and batch as the real ones do."""

    name = "fake"
    native_size = 64

    def features(self, w: Workload, precision: str, opts: Optimizations) -> Features:
        n = w.batch * (2 if w.guided else 1)
        latent = w.pixels / 64
        unet_act = 1000.0 * latent * n + (4.0 * latent**2 * n if opts.attention == "eager" else 0.0)
        per_image = min(w.pixels, TILE) if opts.vae_tiling else w.pixels
        tiles = math.ceil(w.pixels / TILE) if opts.vae_tiling and w.pixels > TILE else 1
        images_at_once = 1 if opts.vae_slicing else w.batch
        calls = tiles * (w.batch if opts.vae_slicing and w.batch > 1 else 1)
        vae_flops = 1e5 * w.pixels * w.batch * (1.3 if tiles > 1 else 1.0)
        return Features(
            text=Phase(1e9 * n, 1e4 * n, W_TEXT),
            unet=Phase(1e9 * latent * n, unet_act, W_UNET),
            vae=Phase(vae_flops, 500.0 * per_image * images_at_once, W_VAE, calls=calls),
            pixels=w.pixels,
            batch=w.batch,
            largest_layer_bytes=LAYER,
        )


def true_times(f: Features) -> dict[str, float]:
    return {
        "text": 1e-3 + f.text.flops / 1e11,
        "step": 2e-3 + f.unet.flops / 5e10,
        "vae": 1e-3 * f.vae.calls + f.vae.flops / 2e10,
        "other": 3e-3 + 1e-9 * f.pixels * f.batch,
    }


def true_peak(f: Features, baseline: float = 1e8, k: float = 1.5) -> float:
    return baseline + f.weight_bytes + k * max(f.text.activation_bytes, f.unet.activation_bytes, f.vae.activation_bytes)


PLAN = [(32, 1), (64, 1), (32, 4), (96, 1), (64, 4), (96, 4)]


def make_calibration(key: CalibrationKey | None = None, noise: float = 0.0, seed: int = 0, slow_vae: float = 1.0,
                     plan: list[tuple[int, int]] = PLAN, run_id: int = 1) -> Calibration:
    key = key or CalibrationKey("tiny-sd", "cpu", "fp32")
    rng = np.random.default_rng(seed)
    opts = Optimizations.parse(key.switches)
    arch = FakeArchitecture()
    points = []
    for i, (size, batch) in enumerate(plan):
        w = Workload(size, size, 4, batch)
        f = arch.features(w, key.precision, opts)
        t = true_times(f)
        t["vae"] *= slow_vae
        jitter = {k: v * (1 + noise * rng.standard_normal()) for k, v in t.items()}
        evals = w.steps + 1  # a PNDM-like scheduler runs one extra iteration
        call = jitter["text"] + evals * jitter["step"] + jitter["vae"] + jitter["other"]
        points.append(CalibrationPoint(i + 1, w, evals, call, jitter["text"], jitter["step"], jitter["vae"], jitter["other"], 0.5,
                                       true_peak(f) * (1 + noise * rng.standard_normal())))
    return Calibration(key, run_id, "2026-11-26T00:00:00", "CPU test", points)


def fitted(**kw: object) -> CostModel:
    return CostModel.fit(make_calibration(**kw), FakeArchitecture())  # type: ignore[arg-type]


def truth_call(w: Workload) -> float:
    t = true_times(FakeArchitecture().features(w, "fp32", Optimizations()))
    return t["text"] + (w.steps + 1) * t["step"] + t["vae"] + t["other"]


# ---------------------------------------------------------------------- fitting
def test_fit_recovers_the_laws_the_calibration_was_made_from():
    model = fitted()
    assert model.step.coef == pytest.approx((2e-3, 1 / 5e10), rel=1e-6)
    assert model.vae.coef == pytest.approx((1e-3, 1 / 2e10), rel=1e-6)
    assert model.text.coef == pytest.approx((1e-3, 1 / 1e11), rel=1e-6)
    assert model.other.coef == pytest.approx((3e-3, 1e-9), rel=1e-6)
    assert model.memory is not None and model.memory.coef == pytest.approx((1e8, 1.5), rel=1e-6)
    assert model.eval_offset == 1


@pytest.mark.parametrize("size, steps, batch", [(48, 10, 2), (80, 30, 3), (96, 50, 1), (40, 2, 4), (72, 25, 2), (56, 8, 3)])
def test_held_out_workloads_are_predicted_exactly_from_exact_data(size, steps, batch):
    model = fitted()
    w = Workload(size, size, steps, batch)
    e = model.predict(w)
    assert e.call_s == pytest.approx(truth_call(w), rel=1e-6)
    assert e.time_s == pytest.approx(truth_call(w) + 0.5, rel=1e-6)
    assert e.peak_bytes == pytest.approx(true_peak(FakeArchitecture().features(w, "fp32", Optimizations())), rel=1e-6)
    assert sum(c.seconds for c in e.components) == pytest.approx(e.time_s)
    assert e.component("denoise").seconds == pytest.approx((steps + 1) * true_times(FakeArchitecture().features(w, "fp32", Optimizations()))["step"])
    assert not e.extrapolated and not e.warnings
    assert e.measured and e.basis is not None and e.basis.cell_ids == (1, 2, 3, 4, 5, 6)


def test_noisy_calibration_gives_intervals_around_the_truth():
    inside = 0
    trials = 25
    w = Workload(80, 80, 20, 2)
    for seed in range(trials):
        e = fitted(noise=0.03, seed=seed).predict(w)
        assert e.call_interval.low < e.call_s < e.call_interval.high
        inside += e.call_interval.contains(truth_call(w))
    assert inside / trials >= 0.85


def test_too_few_points_is_an_error_naming_the_command():
    cal = make_calibration()
    cal.points = cal.points[:2]
    cal.failed = ["96x96 b4: out of memory"]
    with pytest.raises(ConfigError, match="needs at least 3") as err:
        CostModel.fit(cal, FakeArchitecture())  # type: ignore[arg-type]
    assert "diffprof calibrate --model tiny-sd" in str(err.value.hint) and "out of memory" in str(err.value.hint)


# ---------------------------------------------------------------------- range
@pytest.mark.parametrize("size, batch, fragment", [(256, 1, "256x256 is beyond"), (16, 1, "16x16 is beyond"), (64, 8, "batch 8 is beyond")])
def test_outside_the_calibrated_range_is_flagged(size, batch, fragment):
    e = fitted().predict(Workload(size, size, 20, batch))
    assert e.extrapolated
    assert any(fragment in w for w in e.warnings)


def test_steps_beyond_the_calibration_are_not_extrapolation():
    e = fitted().predict(Workload(64, 64, 150, 2))
    assert not e.extrapolated and not e.warnings


def test_a_loose_fit_and_failed_cells_are_warned_about():
    cal = make_calibration(noise=0.4, seed=3)
    cal.failed = ["96x96 b8: out of memory"]
    e = CostModel.fit(cal, FakeArchitecture()).predict(Workload(64, 64, 20, 2))  # type: ignore[arg-type]
    assert any("loose" in w for w in e.warnings)
    assert any("out of memory" in w for w in e.warnings)


# ---------------------------------------------------------------------- derived optimizations
def test_vae_slicing_is_derived_from_the_base_calibration():
    model = fitted()
    w = Workload(96, 96, 20, 4)
    base = model.predict(w)
    sliced = model.predict(w, Optimizations(vae_slicing=True))
    assert sliced.peak_bytes < base.peak_bytes  # the VAE term shrinks to one image
    assert sliced.component("vae_decode").source.startswith("modelled")
    # time: the calibrated per-decoder-call overhead once per image, same FLOPs
    assert sliced.component("vae_decode").seconds == pytest.approx(base.component("vae_decode").seconds + 3 * 1e-3, rel=1e-6)
    assert not sliced.measured and any("derived from the none calibration" in n for n in sliced.notes)


def test_vae_tiling_caps_the_vae_term_and_costs_overlap():
    model = fitted()
    w = Workload(192, 192, 20, 1)
    tiled = model.predict(w, Optimizations(vae_tiling=True))
    plain = model.predict(w)
    vae_act = next(p for p in tiled.memory_parts if p.name == "activations")
    assert tiled.peak_bytes < plain.peak_bytes
    assert tiled.peak_phase == "vae" and vae_act.bytes == pytest.approx(1.5 * 500 * TILE, rel=1e-6)  # one tile's worth
    assert tiled.component("vae_decode").seconds > plain.component("vae_decode").seconds


def test_model_offload_keeps_one_component_and_pays_transfers():
    key = CalibrationKey("sd15", "cuda", "fp16")
    model = CostModel.fit(make_calibration(key), FakeArchitecture())  # type: ignore[arg-type]
    w = Workload(96, 96, 20, 4)
    base = model.predict(w)
    off = model.predict(w, Optimizations(offload="model"))
    f = FakeArchitecture().features(w, "fp16", Optimizations())
    expected = 1e8 + max(W_TEXT + 1.5 * f.text.activation_bytes, W_UNET + 1.5 * f.unet.activation_bytes, W_VAE + 1.5 * f.vae.activation_bytes)
    assert off.peak_bytes == pytest.approx(expected, rel=1e-6)
    assert off.peak_bytes < base.peak_bytes
    transfer = off.component("offload_transfer")
    assert transfer.seconds == pytest.approx(2 * (W_TEXT + W_UNET + W_VAE) / H2D_BYTES_PER_S)
    assert off.call_s == pytest.approx(base.call_s + transfer.seconds)
    seq = model.predict(w, Optimizations(offload="sequential"))
    assert [p.bytes for p in seq.memory_parts if p.name == "weights"] == [LAYER]
    assert seq.component("offload_transfer").seconds == pytest.approx((W_TEXT + 21 * W_UNET + W_VAE) / H2D_BYTES_PER_S)


def test_an_offload_calibration_cannot_stand_in_for_no_offload():
    key = CalibrationKey("sd15", "cuda", "fp16", "model_cpu_offload")
    model = CostModel.fit(make_calibration(key), FakeArchitecture())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="include offload transfers"):
        model.predict(Workload(64, 64, 20, 1), Optimizations())
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        fitted().predict(Workload(64, 64, 20, 1), Optimizations(offload="model"))


@pytest.mark.parametrize("switches", ["group_offload", "t5_offload", "drop_t5", "layerwise_casting", "int8_weights", "fp8"])
def test_what_places_or_stores_weights_differently_is_not_derived(switches):
    """The big-model memory switches change the weights' bytes or where they live in ways the cost
    model does not derive: a calibration without them refuses, and names the calibration that would do."""
    key = CalibrationKey("flux-dev", "cuda", "bf16")
    model = CostModel.fit(make_calibration(key), FakeArchitecture())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"estimate does not derive {switches}") as err:
        model.predict(Workload(64, 64, 20, 1), Optimizations.parse(switches))
    assert err.value.hint.startswith("calibrate with them: diffprof calibrate --model flux-dev") and switches.split("=")[0] in err.value.hint
    budget = Estimator(model).fit_budget(1e12, 64, 64, 20, 1)
    assert all(switches not in o.optimizations for o in budget.options)


# ---------------------------------------------------------------------- budgets
def estimator(others: dict[str, Calibration] | None = None, device: str = "cpu") -> Estimator:
    key = CalibrationKey("sd15", device, "fp16" if device == "cuda" else "fp32")
    return Estimator(CostModel.fit(make_calibration(key), FakeArchitecture()), others)  # type: ignore[arg-type]


def test_a_generous_budget_picks_the_fastest_option():
    answer = estimator().fit_budget(10e9, 96, 96, 20, 4)
    assert answer.fits and answer.best is not None
    assert answer.best.optimizations == "none"
    assert "fits in" in answer.message
    assert {o.optimizations for o in answer.options} >= {"none", "vae_slicing", "vae_tiling", "vae_slicing+vae_tiling", "attention_slicing"}


def test_a_tight_budget_picks_the_fastest_option_that_fits():
    est = estimator()
    w = (96, 96, 20, 4)
    none = est.predict(*w)
    sliced = est.predict(*w, optimize="vae_slicing")
    budget = (none.peak_interval.high + sliced.peak_interval.high) / 2
    answer = est.fit_budget(budget, *w)
    assert answer.fits and answer.best is not None
    assert answer.best.optimizations != "none"
    assert answer.best.estimate.peak_interval.high <= budget
    fitting_times = [o.estimate.call_s for o in answer.options if o.fits]
    assert answer.best.estimate.call_s == min(fitting_times)


def test_nothing_fits_names_the_closest_option_and_what_it_needs():
    est = estimator(device="cuda")
    answer = est.fit_budget(1e6, 96, 96, 20, 4)
    assert not answer.fits and answer.best is None
    closest = answer.closest
    assert "sequential_cpu_offload" in closest.optimizations  # only the largest layer resident
    assert closest.needed_bytes == min(o.needed_bytes for o in answer.options)
    message = answer.message
    assert message.startswith("nothing fits in")
    assert closest.optimizations in message and "needs" in message and "more memory" in message
    assert answer.to_dict()["fits"] is False


def test_headroom_is_taken_from_the_budget():
    est = estimator()
    e = est.predict(96, 96, 20, 4)
    budget = e.peak_interval.high * 1.01
    assert est.fit_budget(budget, 96, 96, 20, 4).best.optimizations == "none"  # type: ignore[union-attr]
    tight = est.fit_budget(budget, 96, 96, 20, 4, headroom_bytes=0.05 * budget)
    assert tight.best is None or tight.best.optimizations != "none"


def test_a_calibrated_option_is_measured_not_derived():
    key = CalibrationKey("sd15", "cpu", "fp32", "vae_slicing")
    others = {"vae_slicing": make_calibration(key, slow_vae=3.0, run_id=2)}
    est = estimator(others)
    e = est.predict(96, 96, 20, 4, optimize="vae_slicing")
    assert e.measured and e.basis is not None and e.basis.run_id == 2
    derived = estimator().predict(96, 96, 20, 4, optimize="vae_slicing")
    assert e.component("vae_decode").seconds == pytest.approx(3.0 * derived.component("vae_decode").seconds, rel=1e-6)
    answer = est.fit_budget(10e9, 96, 96, 20, 4)
    by_name = {o.optimizations: o for o in answer.options}
    assert by_name["vae_slicing"].estimate.measured and not by_name["vae_tiling"].estimate.measured


# ---------------------------------------------------------------------- store
def _cells(cal: Calibration, device: str = "cpu") -> list[CellResult]:
    cells = []
    for p in cal.points:
        w = p.workload
        settings = {"model": cal.key.model, "source": "builtin", "task": "txt2img", "scheduler": "default", "steps": w.steps,
                    "guidance": w.guidance, "width": w.width, "height": w.height, "batch": w.batch, "seed": 0,
                    "precision": cal.key.precision, "device": "cuda:0" if device == "cuda" else "cpu", "optimizations": cal.key.optimizations}
        denoise = p.unet_evals * p.step_s
        metrics = {"s_per_call": p.call_s, "load_s": p.load_s, "unet_evals": float(p.unet_evals), "step_median_s": p.step_s,
                   "text_encode_s": p.text_s, "vae_decode_s": p.vae_s,
                   ("peak_allocated_bytes" if device == "cuda" else "host_peak_rss_bytes"): p.peak_bytes}
        samples = {"call_s": [p.call_s] * 3, "text_encode_s": [p.text_s] * 3, "vae_decode_s": [p.vae_s] * 3,
                   "denoise_s": [denoise] * 3, "step_s": [p.step_s] * (3 * p.unet_evals)}
        cells.append(CellResult("calibration", {"width": w.width, "height": w.height, "batch": w.batch}, settings, metrics=metrics, samples=samples))
    return cells


def store_with(tmp_path, *cals: Calibration, failed: bool = False, weights: str = "auto") -> Store:
    store = Store(tmp_path / "cal.db")
    for cal in cals:
        run = store.create_run("diffprof calibrate", {"suites": ["calibration"], "weights": weights}, {})
        for cell in _cells(cal, cal.key.device):
            store.add_cell(run, cell)
        if failed:
            store.add_cell(run, CellResult("calibration", {"width": 128, "height": 128, "batch": 8}, {"model": cal.key.model},
                                           status="failed", error="RuntimeError: out of memory"))
        store.finish_run(run)
    return store


@pytest.fixture
def fake_arch(monkeypatch):
    from diffprof.estimate import architecture

    monkeypatch.setattr(architecture.Architecture, "for_model", classmethod(lambda cls, model: FakeArchitecture()))


def test_no_calibration_error_names_the_exact_command(tmp_path, fake_arch):
    store = Store(tmp_path / "empty.db")
    with pytest.raises(StoreError) as err:
        Estimator.from_store(store, model="tiny-sd", device="cpu")
    assert "no calibration for tiny-sd on cpu (fp32, optimizations: none)" in err.value.message
    assert err.value.hint == f"run: diffprof calibrate --model tiny-sd --device cpu --precision fp32 --db {tmp_path / 'empty.db'} --threads 1"


def test_an_uncalibrated_optimization_set_lists_what_is_calibrated(tmp_path, fake_arch):
    store = store_with(tmp_path, make_calibration())
    with pytest.raises(StoreError) as err:
        Estimator.from_store(store, model="tiny-sd", optimize=["vae_slicing"])
    assert "calibrates: tiny-sd on cpu (fp32, optimizations: none)" in err.value.message
    assert "--optimize vae_slicing" in str(err.value.hint)


def test_the_command_reuses_the_weights_and_offers_to_derive(tmp_path, fake_arch):
    store = store_with(tmp_path, make_calibration(CalibrationKey("sd15", "cuda", "fp16")), weights="synthetic")
    with pytest.raises(StoreError) as err:
        Estimator.from_store(store, model="sd15", device="cuda", optimize="vae_tiling")
    assert str(err.value.hint).startswith(f"run: diffprof calibrate --model sd15 --device cuda --precision fp16 --weights synthetic "
                                          f"--optimize vae_tiling --db {tmp_path / 'cal.db'}")
    assert "--derive" in str(err.value.hint)


def test_from_store_picks_the_calibrated_device_and_precision_and_the_newest_run(tmp_path, fake_arch):
    old = make_calibration(slow_vae=5.0)
    new = make_calibration(run_id=2)
    store = store_with(tmp_path, old, new, failed=True)
    est = Estimator.from_store(store, model="tiny-sd")
    assert est.key == CalibrationKey("tiny-sd", "cpu", "fp32", "none")
    e = est.predict(80, 80, 20, 2)
    w = Workload(80, 80, 20, 2)
    assert e.call_s == pytest.approx(truth_call(w), rel=1e-6)  # the newer, not the slow-VAE run
    assert e.basis is not None and e.basis.run_id == 2 and len(e.basis.cell_ids) == 6
    assert any("out of memory" in warning for warning in e.warnings)


def test_from_store_on_a_cuda_calibration_reads_peak_allocated(tmp_path, fake_arch):
    cal = make_calibration(CalibrationKey("sd15", "cuda", "fp16"))
    store = store_with(tmp_path, cal)
    e = Estimator.from_store(store, model="sd15", device="cuda:0").predict(64, 64, 20, 2)
    assert e.memory_metric == "peak_allocated_bytes" and e.precision == "fp16"
    assert e.peak_bytes == pytest.approx(true_peak(FakeArchitecture().features(Workload(64, 64, 20, 2), "fp16", Optimizations())), rel=1e-6)


def test_from_a_named_run_of_another_suite(tmp_path, fake_arch):
    cal = make_calibration()
    store = Store(tmp_path / "bench.db")
    run = store.create_run("diffprof bench", {"suites": ["resolutions"]}, {})
    for cell in _cells(cal):
        store.add_cell(run, replace(cell, suite="resolutions"))
    with pytest.raises(StoreError):
        Estimator.from_store(store, model="tiny-sd")  # not a calibration run
    est = Estimator.from_store(store, model="tiny-sd", run=run)
    assert est.predict(64, 64, 20, 2).call_s == pytest.approx(truth_call(Workload(64, 64, 20, 2)), rel=1e-6)


def test_estimate_round_trips_to_json_ready_data():
    import json

    e = fitted().predict(Workload(64, 64, 20, 2))
    data = json.loads(json.dumps(e.to_dict()))
    assert data["workload"] == {"width": 64, "height": 64, "steps": 20, "batch": 2, "guidance": 7.5, "scheduler": "default", "task": "txt2img", "strength": 1.0}
    assert data["measured"] is True and data["interval"]["low"] < data["time_s"] < data["interval"]["high"]
    assert [c["name"] for c in data["components"]] == ["load", "text_encode", "denoise", "vae_decode", "other"]
