"""The scripts behind issue 21's must-show tables (benchmarks/gpu_dit_all.sh) run their whole code path
on a CPU with the tiny presets, so on the GPU only its GPU-only paths are new: each writes its table to
stdout, $OUT (JSON) and its docs/benchmarks.md section after every variant."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from diffprof.report.sections import begin_marker

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def script(monkeypatch, tmp_path):
    """Run a benchmark script's main() in this process with ``argv``; $OUT is a temporary folder."""
    import importlib

    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("OUT", str(tmp_path))

    def run(name: str, *argv: str) -> int:
        module = importlib.import_module(name)
        monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", *argv])
        return module.main()

    return run


def test_the_speed_table_runs_every_variant_and_writes_its_section(script, tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    assert script("gpu_dit", "--model", "tiny-flux", "--device", "cpu", "--size", "64", "--steps", "2", "--precision", "fp32", "--repeats", "1",
                  "--eager-repeats", "1", "--optimize", "fast_loop,text_cache,fuse_qkv", "--doc", str(doc)) == 0
    text = doc.read_text()
    assert begin_marker("dit-tiny-flux") in text and "_Written by `python3 benchmarks/gpu_dit.py --model tiny-flux" in text
    for variant in ("diffusers eager", "diffprof eager", "diffprof -O fast_loop,text_cache,fuse_qkv"):
        assert f"\n{variant} " in text
    assert "CUDA events vs synchronized wall:" in text and "ran fuse_qkv+fast_loop+text_cache; text embeddings cached on the timed calls" in text
    rows = json.loads((tmp_path / "dit-tiny-flux.json").read_text())
    fast = rows["diffprof -O fast_loop,text_cache,fuse_qkv"]
    assert fast["latent_rel_err"] == 0 and math.isinf(fast["psnr_db"]) and fast["text_s"] == 0  # exact: fp32, same seed, cached text
    assert fast["switches"] == "fuse_qkv+fast_loop+text_cache"


def test_the_verdicts_name_the_issues_two_targets():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_dit
    finally:
        sys.path.remove(str(BENCH))
    rows = {"diffprof -O fast": {"speedup": 2.61, "latent_rel_err": 3.1e-2, "switches": "fast+fp8+compile_regions"},
            gpu_dit.LOSSLESS: {"speedup": 1.72, "latent_rel_err": 2.4e-2, "switches": "fast+compile_regions"}}
    assert gpu_dit.verdicts(rows) == [
        "fast: 2.61x over diffusers eager (target >= 2.5x: met), latent error 3.10e-02 (fast+fp8+compile_regions)",
        "lossless (fast without fp8): 1.72x, latent error 2.40e-02 (target < 2e-2: NOT met) (fast+compile_regions)",
    ]


def test_lossless_is_fast_without_fp8_for_the_models_denoiser(monkeypatch):
    import torch

    sys.path.insert(0, str(BENCH))
    try:
        import gpu_dit
    finally:
        sys.path.remove(str(BENCH))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert gpu_dit.lossless_switches("flux-dev", torch.device("cuda"), "bf16") == [
        "channels_last", "fuse_qkv", "compile=unet+vae", "cuda_graph", "text_cache", "vae_bf16", "compile_regions"]


def test_the_memory_table_measures_each_option_against_none(script, tmp_path):
    doc = tmp_path / "benchmarks.md"
    assert script("gpu_dit_memory", "--model", "tiny-sd3", "--device", "cpu", "--size", "64", "--steps", "2", "--slow-steps", "1",
                  "--options", "none,drop_t5,layerwise_casting,sequential_cpu_offload", "--doc", str(doc)) == 0
    rows = {r["option"]: r for r in json.loads((tmp_path / "dit-memory-tiny-sd3.json").read_text())}
    assert set(rows) == {"none", "drop_t5", "layerwise_casting"}  # sequential offload needs CUDA: reported as failed, the rest kept
    assert rows["none"]["latent_rel_err"] == 0 and rows["drop_t5"]["latent_rel_err"] > 0 and rows["layerwise_casting"]["psnr_db"] < math.inf
    text = doc.read_text()
    assert begin_marker("dit-memory-tiny-sd3") in text and "sequential_cpu_offload at 1 steps" in text


@pytest.mark.slow  # a calibration and five held-out cells, each in its own process on a CPU
def test_the_estimate_check_calibrates_predicts_and_writes_its_section(script, tmp_path):
    doc = tmp_path / "benchmarks.md"
    code = script("estimate_accuracy", "--model", "tiny-flux", "--device", "cpu", "--sizes", "32,48,64", "--quick", "--steps", "2", "--repeats", "1",
                  "--no-isolate", "--db", str(tmp_path / "e.db"), "--doc", str(doc))
    text = doc.read_text()
    assert code in (0, 1) and begin_marker("estimate-tiny-flux") in text and "- targets: time median error" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and " steps |" in line]
    assert len(rows) == 5 and rows[0].startswith("| 32x32, batch 1, 6 steps |")


def test_the_kernel_table_splits_a_transformers_flops_and_reads_each_part_against_its_peak(dit_engine, monkeypatch):
    """benchmarks/gpu_dit_kernels.py: the FLOPs of one evaluation split into the linear layers' and
    attention's (on meta, SDPA is its two bmm), and each kernel class's time read as TFLOP/s."""
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_dit_kernels as kernels
    from diffprof.flops import pipeline_flops
    from diffprof.flops.inputs import denoiser_inputs, denoiser_kind

    engine = dit_engine("tiny-flux")
    split = kernels.flop_split(engine, 64, guidance=False)
    pipe, model = engine.base, engine.base.transformer
    assert split["matmul"] + split["attention"] == pipeline_flops(pipe, width=64, height=64, batch=1, guidance=False).unet_per_eval
    _, kw = denoiser_inputs(denoiser_kind(model), model, pipe, batch=1, guidance=False, latent_h=8, latent_w=8)
    tokens = kw["hidden_states"].shape[1] + kw["encoder_hidden_states"].shape[1]  # joint attention over image + text
    cfg = model.config
    width = cfg.num_attention_heads * cfg.attention_head_dim
    assert split["attention"] == 4 * tokens * tokens * width * (cfg.num_layers + cfg.num_single_layers)  # QK^T and PV per block

    assert [kernels.kind_of(n) for n in ("void cutlass::device_kernel<f8f8bf16_rowwise>", "nvjet_tst_128x256_64x4_h_bz_TNN",
                                         "cudnn_generated_fort_native_sdpa_sm90_flash_fprop", "triton_poi_fused_add_mul_0", "elementwise_kernel")] \
        == ["gemm fp8", "gemm bf16", "attention", "triton (fused)", "other"]
    row = {"variant": "row", "switches": "fast", "first_call_s": 50.0, "wall_s": 0.1, "walls_s": [0.1], "profiled_wall_s": 0.11,
           "kernel_us": {"gemm fp8": 2000.0, "attention": 1000.0, "triton (fused)": 500.0}, "top": [("k", 2000.0, 10)],
           "flops_per_eval": {"matmul": 1.979e12, "attention": 0.4945e12}, "latents": None}
    lines = kernels.report(row, steps=2, evals_per_step=1, ref=None)
    fp8 = next(line for line in lines if line.startswith("gemm fp8")).split()
    attention = next(line for line in lines if line.startswith("attention")).split()
    assert fp8[2:] == ["2.0", "1.00", "57%", "1979", "100%"]  # 2 x 1.979 TFLOP in 2 ms: the fp8 dense peak
    assert attention[-2:] == ["989", "100%"]  # 2 x 0.4945 TFLOP in 1 ms: the bf16 peak
