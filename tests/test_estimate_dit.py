"""`calibrate` + `estimate` on the diffusion-transformer families.

The cost model ties step time to the denoiser's FLOPs and peak memory to traced activations; with a
transformer both come from its joint attention over image + text tokens, and text encoding from
every encoder at its own sequence length. Exact data made from known laws over the real tiny
architectures must be fitted back exactly at held-out workloads (as test_estimate.py does for the
analytic stand-in), and the commands run end to end on each tiny preset.
"""

from __future__ import annotations

import json

import pytest

from conftest import simulated_host

from diffprof.cli.app import main
from diffprof.engine.switches import Optimizations
from diffprof.errors import ConfigError
from diffprof.estimate import Estimator, Workload
from diffprof.estimate.architecture import Architecture
from diffprof.estimate.calibration import Calibration, CalibrationKey, CalibrationPoint
from diffprof.estimate.model import CostModel
from diffprof.flops import pipeline_flops
from diffprof.models import get_preset
from diffprof.store import Store

DIT = ("tiny-sd3", "tiny-flux", "tiny-pixart", "tiny-sana")


def laws(f) -> dict[str, float]:
    return {"text": 2e-3 + f.text.flops / 4e10, "step": 1e-3 + f.unet.flops / 2e10, "vae": 5e-4 * f.vae.calls + f.vae.flops / 3e10,
            "other": 2e-3 + 1e-9 * f.pixels * f.batch}


def peak(f) -> float:
    return 3e8 + f.weight_bytes + 2.0 * max(f.text.activation_bytes, f.unet.activation_bytes, f.vae.activation_bytes)


def exact_calibration(arch: Architecture, model: str, plan: list[tuple[int, int]]) -> Calibration:
    key = CalibrationKey(model, "cpu", "fp32")
    points = []
    for i, (size, batch) in enumerate(plan):
        w = Workload(size, size, 4, batch)
        f = arch.features(w, "fp32", Optimizations())
        t = laws(f)
        call = t["text"] + 4 * t["step"] + t["vae"] + t["other"]
        points.append(CalibrationPoint(i + 1, w, 4, call, t["text"], t["step"], t["vae"], t["other"], 0.4, peak(f)))
    return Calibration(key, 1, "2026-12-02T00:00:00", "CPU test", points)


@pytest.mark.parametrize("model, plan, held_out", [
    ("tiny-flux", [(32, 1), (64, 1), (32, 4), (96, 1), (64, 4), (96, 4)], [(48, 12, 2), (80, 20, 3), (64, 8, 1)]),
    ("tiny-sd3", [(32, 1), (64, 1), (32, 4), (96, 1), (64, 4), (96, 4)], [(48, 12, 2), (80, 28, 3)]),
    ("tiny-sana", [(32, 1), (64, 1), (32, 4), (96, 1), (64, 4), (96, 4)], [(64, 20, 2), (96, 10, 3)]),
])
def test_held_out_transformer_workloads_are_predicted_exactly_from_exact_data(model, plan, held_out):
    arch = Architecture.for_model(model)
    fitted = CostModel.fit(exact_calibration(arch, model, plan), arch)
    for size, steps, batch in held_out:
        w = Workload(size, size, steps, batch)
        f = arch.features(w, "fp32", Optimizations())
        t = laws(f)
        e = fitted.predict(w)
        assert e.call_s == pytest.approx(t["text"] + steps * t["step"] + t["vae"] + t["other"], rel=1e-6)
        assert e.peak_bytes == pytest.approx(peak(f), rel=1e-6)
        assert e.component("denoise").seconds == pytest.approx(steps * t["step"], rel=1e-6)
        assert e.peak_phase in ("text", "transformer", "vae") and not e.extrapolated


def test_a_transformer_architecture_costs_what_its_pipeline_runs():
    arch = Architecture.for_model("tiny-flux")
    assert arch.denoiser == "transformer" and arch.text_encoders == ["text_encoder", "text_encoder_2"] and arch.phase_name("unet") == "transformer"
    w = Workload(64, 64, 4, 2, guidance=3.5)
    f = arch.features(w, "fp32", Optimizations())
    modules = arch.modules("fp32")
    flops = pipeline_flops(type("P", (), dict(modules))(), width=64, height=64, batch=2, guidance=True, sequence_lengths=arch.sequence_lengths)
    assert (f.text.flops, f.unet.flops) == (flops.text_encoder, flops.unet_per_eval)
    assert f.unet.weight_bytes == arch.component_bytes("fp32")["transformer"]
    bigger = arch.features(Workload(96, 96, 4, 2, guidance=3.5), "fp32", Optimizations())
    assert bigger.unet.flops > f.unet.flops and bigger.unet.activation_bytes > f.unet.activation_bytes
    # schnell reads 256 T5 tokens: fewer text FLOPs than dev's 512, from its preset's sequence lengths
    assert get_preset("flux-schnell").sequence_lengths["text_encoder_2"] == 256


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> dict[str, str]:
    """One small CPU calibration per tiny DiT preset (2 sizes x 2 batches, 2 steps, 1 repeat, no warmup), each in its store."""
    dbs = {}
    for model in DIT:
        db = str(tmp_path_factory.mktemp("cal") / f"{model}.db")
        with simulated_host(0.0):
            code = main(["calibrate", "--model", model, "--device", "cpu", "--threads", "1", "--resolutions", "32,64", "--batch-sizes", "1,2",
                         "--steps", "2", "--repeats", "1", "--warmup", "0", "--no-isolate", "--no-progress", "--db", db])
        assert code == 0, model
        dbs[model] = db
    return dbs


@pytest.mark.parametrize("model", DIT)
def test_calibrate_and_estimate_run_on_every_tiny_dit(calibrated, model, capsys):
    with Store(calibrated[model]) as store:
        (run,) = store.list_runs()
        cells = store.get_run(run.id).cells
        estimator = Estimator.from_store(store, model=model, device="cpu")
    assert len(cells) == 4 and all(c.ok and c.metrics["flops_per_image"] > 0 for c in cells)
    e = estimator.predict(64, 64, 10, 2)
    assert e.call_s > 0 and e.peak_bytes > 0 and e.component("denoise").detail.startswith("10 denoiser calls")
    assert e.peak_phase in ("text", "transformer", "vae")
    capsys.readouterr()
    assert main(["estimate", "--model", model, "--width", "64", "--height", "64", "--steps", "10", "--batch", "2", "--format", "json",
                 "--db", calibrated[model]]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["time_s"] == pytest.approx(e.time_s) and data["peak_bytes"] == pytest.approx(e.peak_bytes)
    assert [c["name"] for c in data["components"]] == ["load", "text_encode", "denoise", "vae_decode", "other"]


def test_estimate_refuses_sizes_the_transformer_cannot_tile(calibrated):
    with Store(calibrated["tiny-flux"]) as store:
        estimator = Estimator.from_store(store, model="tiny-flux", device="cpu")
    with pytest.raises(ConfigError, match="width 72 must be a multiple of 16 for tiny-flux"):
        estimator.predict(72, 64, 10)
