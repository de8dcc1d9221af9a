"""The meta-device activation tracer, the architecture features built on it, and the calibration plan."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffprof.config import RunConfig
from diffprof.engine.switches import Optimizations
from diffprof.estimate.activations import trace_memory
from diffprof.estimate.architecture import Architecture
from diffprof.estimate.workload import Workload
from diffprof.suites.base import SUITES
from diffprof.suites.calibration import plan

META = torch.device("meta")


# ---------------------------------------------------------------------- tracer
def test_tracer_counts_live_storages_not_views_inputs_or_in_place():
    x = torch.zeros(1000, device=META)  # 4000 B, exists before: not counted

    def fn(x: torch.Tensor) -> torch.Tensor:
        a = x * 2  # 4000 alive
        b = a + 1  # 8000 alive
        del a  # 4000
        b.view(10, 100)  # a view: nothing new
        b.add_(1)  # in place: nothing new
        d = torch.cat([b, b])  # 4000 + 8000 = 12000
        return d.sum()  # + 4 bytes while d is alive

    assert trace_memory(fn, x).peak_bytes == 12004


def test_fused_attention_holds_no_score_matrix_but_explicit_attention_does():
    b, h, tokens, d = 2, 4, 256, 16
    q = torch.zeros(b, h, tokens, d, device=META)
    fused = trace_memory(F.scaled_dot_product_attention, q, q, q).peak_bytes
    assert fused == b * h * tokens * d * 4 + b * h * tokens * 4  # output + log-sum-exp

    def explicit(q: torch.Tensor) -> torch.Tensor:
        scores = (q @ q.transpose(-1, -2)).softmax(-1)
        return scores @ q

    assert trace_memory(explicit, q).peak_bytes >= 2 * b * h * tokens * tokens * 4  # scores and their softmax


def test_module_calls_are_counted():
    layer = torch.nn.Linear(8, 8, device=META)

    def twice(x: torch.Tensor) -> torch.Tensor:
        return layer(layer(x))

    assert trace_memory(twice, torch.zeros(3, 8, device=META), calls_of=layer).calls == 2


# ---------------------------------------------------------------------- architecture
@pytest.fixture(scope="module")
def tiny() -> Architecture:
    return Architecture.for_model("tiny-sd")


def test_flops_and_weights_match_the_real_pipeline(tiny):
    from diffprof.flops import pipeline_flops
    from diffprof.models import build_tiny

    pipe = build_tiny("tiny-sd")
    f = tiny.features(Workload(64, 64, 20, 2), "fp32", Optimizations())
    real = pipeline_flops(pipe, width=64, height=64, batch=2, guidance=True)
    assert (f.text.flops, f.unet.flops, f.vae.flops) == (real.text_encoder, real.unet_per_eval, real.vae_decode)
    params = {name: sum(p.numel() * 4 for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
    assert f.unet.weight_bytes >= params["unet"] and f.unet.weight_bytes - params["unet"] < 0.01 * params["unet"]
    assert f.vae.weight_bytes >= params["vae"]
    assert tiny.component_bytes("bf16")["unet"] == pytest.approx(f.unet.weight_bytes / 2, rel=0.01)


def test_vae_tiling_caps_the_decode_activation_of_large_images(tiny):
    big = Workload(128, 128, 20, 1)  # the tiny VAE tiles above 64 px
    plain = tiny.features(big, "fp32", Optimizations())
    tiled = tiny.features(big, "fp32", Optimizations(vae_tiling=True))
    assert tiled.vae.calls > 1 and plain.vae.calls == 1
    assert tiled.vae.activation_bytes < plain.vae.activation_bytes / 3
    assert tiled.vae.flops > plain.vae.flops  # overlapping tiles decode some pixels twice
    small = Workload(64, 64, 20, 1)
    assert tiny.features(small, "fp32", Optimizations(vae_tiling=True)).vae == tiny.features(small, "fp32", Optimizations()).vae


def test_vae_slicing_decodes_one_image_at_a_time(tiny):
    four = tiny.features(Workload(96, 96, 20, 4), "fp32", Optimizations(vae_slicing=True))
    one = tiny.features(Workload(96, 96, 20, 1), "fp32", Optimizations())
    plain = tiny.features(Workload(96, 96, 20, 4), "fp32", Optimizations())
    assert four.vae.calls == 4
    assert four.vae.activation_bytes < plain.vae.activation_bytes / 2
    assert four.vae.activation_bytes == pytest.approx(one.vae.activation_bytes, rel=0.5)


def test_eager_attention_grows_quadratically_and_sdpa_does_not(tiny):
    def unet_bytes(size: int, attention: str) -> float:
        opts = Optimizations(attention=attention)  # type: ignore[arg-type]
        return tiny.features(Workload(size, size, 20, 1), "fp32", opts).unet.activation_bytes

    sdpa = unet_bytes(256, "sdpa") / unet_bytes(128, "sdpa")
    eager = unet_bytes(256, "eager") / unet_bytes(128, "eager")
    assert 3 < sdpa < 5  # ~4x pixels -> ~4x bytes
    assert eager > 1.5 * sdpa


def test_unknown_architecture_is_a_clear_error(tmp_path):
    from diffprof.errors import ModelError

    with pytest.raises(ModelError, match="cannot read the architecture") as err:
        Architecture.for_model(str(tmp_path / "nothing-here"))
    assert "preset" in str(err.value.hint)


# ---------------------------------------------------------------------- calibration plan
def test_calibration_suite_is_registered():
    assert "calibration" in SUITES


def test_tiny_model_plan_is_three_sizes_by_two_batches_smallest_first():
    cfg = RunConfig.from_mapping({"model": "tiny-sd", "device": "cpu", "suites": ["calibration"]})
    assert plan(cfg) == [(32, 32, 1), (64, 64, 1), (32, 32, 4), (96, 96, 1), (64, 64, 4), (96, 96, 4)]
    cells = SUITES["calibration"]().cells(cfg)
    assert cells[0].labels == {"width": 32, "height": 32, "batch": 1}
    assert all(c.config.task == "txt2img" for c in cells) and len(cells) == 6


@pytest.mark.parametrize("device, expected", [("cpu", [128, 192, 256]), ("cuda", [256, 512, 768])])
def test_full_size_plans_follow_the_device(device, expected):
    cfg = RunConfig.from_mapping({"model": "sd15", "device": device, "suites": ["calibration"]})
    points = plan(cfg)
    assert sorted({w for w, _, _ in points}) == expected
    assert sorted({b for _, _, b in points}) == ([1, 2] if device == "cpu" else [1, 4])
    assert len(points) == 6


def test_plan_takes_resolutions_and_batches_from_the_config():
    cfg = RunConfig.from_mapping({"model": "tiny-sd", "resolutions": ["48x32", "64"], "batch_sizes": [2, 3], "suites": ["calibration"]})
    assert plan(cfg) == [(48, 32, 2), (48, 32, 3), (64, 64, 2), (64, 64, 3)]
