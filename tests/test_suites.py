"""Every suite on the built-in tiny models: its cells, their labels, statuses and metrics."""

from __future__ import annotations

from io import StringIO

import pytest
import torch
from rich.console import Console

from diffprof.config import RunConfig
from diffprof.store import Store
from diffprof.suites import SUITES, expand
from diffprof.suites.runner import Runner

BASE = dict(model="tiny-sd", steps=2, width=32, height=32, repeats=2, warmup=1, threads=1, report=None, scheduler="euler", isolate=False)

#: suite -> (extra config, expected labels in order, statuses)
CASES = {
    "generation": ({}, [{"model": "tiny-sd"}], ["ok"]),
    "schedulers": ({"schedulers": ["euler", "ddim", "unipc"]}, [{"scheduler": s} for s in ("euler", "ddim", "unipc")], ["ok"] * 3),
    "resolutions": ({"resolutions": ["32x32", "64x48"]}, [{"width": 32, "height": 32}, {"width": 64, "height": 48}], ["ok"] * 2),
    "memory": (
        {"memory_optimizations": ["none", "vae_slicing+vae_tiling", "attention_slicing", "sequential_cpu_offload"]},
        [{"optimization": o} for o in ("none", "vae_slicing+vae_tiling", "attention_slicing", "sequential_cpu_offload")],
        ["ok", "ok", "ok", "failed"],  # offload needs CUDA: a failed cell with the reason, the suite goes on
    ),
    "steps": ({"step_counts": [1, 3]}, [{"steps": 1}, {"steps": 3}], ["ok"] * 2),
    "guidance": ({"guidance_scales": [1.0, 7.5], "quality": ["none"]}, [{"guidance": 1.0}, {"guidance": 7.5}], ["ok"] * 2),
    "batch": ({"batch_sizes": [1, 3]}, [{"batch": 1}, {"batch": 3}], ["ok"] * 2),
    "precision": (
        {"precisions": ["fp32", "fp16"]},
        [{"precision": "fp32", "compile": False}, {"precision": "fp32", "compile": True}, {"precision": "fp16", "compile": False}, {"precision": "fp16", "compile": True}],
        ["ok", "ok", "failed", "failed"],
    ),
    "tasks": ({}, [{"task": t} for t in ("txt2img", "img2img", "inpaint")], ["ok"] * 3),
    "pipelines": ({"models": ["tiny-sd", "tiny-sdxl", "tiny-sd-inpaint"]}, [{"model": m} for m in ("tiny-sd", "tiny-sdxl", "tiny-sd-inpaint")], ["ok"] * 3),
    "quality": ({"schedulers": ["euler"], "step_counts": [2], "quality": ["convergence"], "quality_prompts": 1, "reference_steps": 4}, [{"scheduler": "euler", "steps": 2}], ["ok"]),
}


def test_every_registered_suite_is_covered():
    assert set(SUITES) - {"calibration", "ablation"} == set(CASES)


def test_ablation_removes_one_fast_element_at_a_time():
    from diffprof.engine.switches import FAST_PRESET, Optimizations

    cells = expand(RunConfig.from_mapping({**BASE, "suites": ["ablation"]}))
    variants = [c.labels["variant"] for c in cells]
    assert variants[:2] == ["none", "fast"] and len(variants) == 2 + len(FAST_PRESET)
    fast = Optimizations.parse(cells[1].config.optimize)
    for cell in cells[2:]:
        opts = Optimizations.parse(cell.config.optimize)
        assert opts != fast and opts.fast_loop  # one element gone, diffprof's loop kept


def test_ablation_keeps_compile_only_switches_out_of_cells_that_compile_nothing():
    """`-O compile_regions,compile_mode=...` shapes the compiled cells; the cells without compile
    must neither be refused for it nor start compiling because of it."""
    import torch

    from diffprof.engine.switches import Optimizations

    config = RunConfig.from_mapping({**BASE, "suites": ["ablation"], "optimize": ["compile_regions", "kernel_tuning", "compile_mode=max-autotune-no-cudagraphs", "vae_slicing"]})
    cells = {c.labels["variant"]: Optimizations.parse(c.config.optimize) for c in expand(config)}
    for variant in ("none", "fast - compile=unet+vae"):
        opts = cells[variant]
        assert not opts.compile and not opts.compile_regions and not opts.kernel_tuning and opts.vae_slicing, variant
        opts.validate(torch.device("cuda"), "fp16")
    assert cells["fast"].compile_regions and cells["fast"].kernel_tuning and cells["fast"].compile_mode == "max-autotune-no-cudagraphs"
    assert cells["fast - fuse_qkv"].compile_regions


def test_precision_suite_eager_cells_drop_every_compile_switch_and_compiled_cells_keep_the_users():
    from diffprof.engine.switches import Optimizations

    config = RunConfig.from_mapping({**BASE, "suites": ["precision"], "precisions": ["fp32"],
                                     "optimize": ["compile=unet+vae", "compile_regions", "kernel_tuning", "vae_tiling"]})
    eager, compiled = (Optimizations.parse(c.config.optimize) for c in expand(config))
    assert not eager.compile and not eager.compile_regions and not eager.kernel_tuning and eager.vae_tiling
    assert compiled.compile == ("unet", "vae") and compiled.compile_regions and compiled.kernel_tuning and compiled.vae_tiling
    plain = [Optimizations.parse(c.config.optimize) for c in expand(RunConfig.from_mapping({**BASE, "suites": ["precision"], "precisions": ["fp32"]}))]
    assert [o.compile for o in plain] == [(), ("unet",)]


@pytest.mark.parametrize("suite", sorted(CASES))
def test_suite(suite, tmp_path, monkeypatch):
    extra, labels, statuses = CASES[suite]
    if suite == "precision":
        # compiling the tiny UNet on 2 CPU cores takes minutes; the suite's job is the sweep
        monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    config = RunConfig.from_mapping({**BASE, **extra, "suites": [suite], "db": str(tmp_path / "s.db")})
    assert [c.labels for c in expand(config)] == labels
    with Store(config.db) as store:
        summary = Runner(config, store, console=Console(file=StringIO()), progress=False).run()
        run = store.get_run(summary.run_id, artifacts=True)
    assert [c.labels for c in run.cells] == labels
    assert [c.status for c in run.cells] == statuses, [c.error for c in run.cells]
    for cell in run.cells:
        if cell.ok:
            assert cell.metrics["s_per_image"] > 0 and len(cell.samples["call_s"]) == 2
            assert cell.metrics["text_encode_s"] > 0 and cell.metrics["host_peak_rss_bytes"] > 0
            assert "image.png" in cell.artifacts and "timeline.json" in cell.artifacts
        else:
            assert cell.error
    if suite == "batch":
        assert run.cells[1].metrics["images_per_s"] > 0 and run.cells[1].settings["batch"] == 3
    if suite == "tasks":
        assert run.cells[1].metrics["vae_encode_s"] > 0
    if suite == "quality":
        assert run.cells[0].metrics["psnr_db"] > 0 and 0 <= run.cells[0].metrics["ssim"] <= 1
    if suite == "pipelines":
        assert run.cells[2].settings["task"] == "inpaint"
    if suite == "schedulers":
        assert len({c.settings["engine_reused"] for c in run.cells}) == 2  # loaded once, reused after


@pytest.mark.slow  # a fresh process per cell
def test_isolate_runs_each_cell_in_its_own_process(tmp_path):
    # one round each (repeats 1): every round of an isolated cell is a process of its own, ~5 s of imports each
    config = RunConfig.from_mapping({**BASE, "suites": ["steps"], "step_counts": [1, 2], "repeats": 1, "isolate": True, "db": str(tmp_path / "i.db")})
    with Store(config.db) as store:
        summary = Runner(config, store, console=Console(file=StringIO()), progress=False).run()
        run = store.get_run(summary.run_id)
    assert [c.status for c in run.cells] == ["ok", "ok"]
    assert all(c.settings.get("isolated") for c in run.cells)
    assert all(c.metrics["load_s"] > 0 for c in run.cells)


def test_memory_suite_measures_offload_on_top_of_fast_without_what_offload_excludes():
    """`-O fast` with the memory suite: the offload cells keep what they can (channels_last; compile
    too with model offload) and name what they dropped, instead of failing on cuda_graph; fused QKV
    goes too, since offloaded it keeps a second copy of the weights; attention slicing drops fused QKV (an SDPA processor; its cell failed on an H100);
    the other cells keep `fast` whole."""
    from diffprof.engine.switches import Optimizations

    config = RunConfig.from_mapping({**BASE, "suites": ["memory"], "optimize": ["fast"],
                                     "memory_optimizations": ["none", "vae_slicing", "attention_slicing", "model_cpu_offload",
                                                              "sequential_cpu_offload"]})
    cells = {c.labels["optimization"]: c.config.optimize for c in expand(config)}
    assert list(cells) == ["none", "vae_slicing", "attention_slicing (no fuse_qkv)", "model_cpu_offload (no fuse_qkv, cuda_graph, vae_bf16)",
                           "sequential_cpu_offload (no fuse_qkv, compile, cuda_graph, vae_bf16)"]
    sliced = Optimizations.parse(cells["attention_slicing (no fuse_qkv)"])
    assert sliced.attention == "slicing" and not sliced.fuse_qkv and sliced.cuda_graph and sliced.compile
    assert cells["none"] == ["fast"] and cells["vae_slicing"] == ["fast", "vae_slicing"]
    model = Optimizations.parse(cells["model_cpu_offload (no fuse_qkv, cuda_graph, vae_bf16)"])
    assert model.offload == "model" and model.compile and not model.fast_loop and not model.cuda_graph and not model.fuse_qkv and not model.vae_bf16
    assert model.channels_last
    seq = Optimizations.parse(cells["sequential_cpu_offload (no fuse_qkv, compile, cuda_graph, vae_bf16)"])
    assert seq.offload == "sequential" and not seq.compile and not seq.cuda_graph and not seq.vae_bf16 and not seq.fast_loop and seq.channels_last
    assert not seq.fuse_qkv
    for switches in cells.values():  # every cell is a valid set on a GPU
        Optimizations.parse(switches).validate(torch.device("cuda"), "fp16")


def test_an_attention_cell_replaces_the_users_attention_switch():
    """`-O eager_attention` with the memory suite's attention_slicing cell: two attention switches
    would be refused; the cell's own wins and the label says what it replaced."""
    from diffprof.engine.switches import Optimizations, yield_to

    assert yield_to(["eager_attention", "vae_slicing"], Optimizations.parse("attention_slicing")) == (["vae_slicing"], ["eager_attention"])
    assert yield_to(["eager_attention", "vae_slicing"], Optimizations.parse("vae_tiling")) == (["eager_attention", "vae_slicing"], [])


def test_a_folder_s_default_resolutions_are_around_its_own_native_size(tmp_path):
    """0.5x, 1x, 1.5x native: an SDXL folder's native size is its UNet's 128 latents x 8 = 1024 (as the engine
    and the estimator read it), not a fixed 512; a denoiser config naming no sample size keeps the fallback."""
    import json

    from diffprof.engine.model_facts import FALLBACK_SIZE, model_facts

    folder = tmp_path / "sdxl"
    for part, config in {"unet": {"sample_size": 128}, "vae": {"block_out_channels": [128, 256, 512, 512]}}.items():
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text(json.dumps(config))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                                                         "vae": ["diffusers", "AutoencoderKL"]}))
    assert model_facts(str(folder)).native_size == 1024
    cells = SUITES["resolutions"]().cells(RunConfig.from_mapping({"model": str(folder)}))
    assert [c.labels["width"] for c in cells] == [512, 1024, 1536]
    import shutil

    shutil.copytree(folder, tmp_path / "nosize")  # model_facts is cached per path
    (tmp_path / "nosize" / "unet" / "config.json").write_text("{}")
    assert model_facts(str(tmp_path / "nosize")).native_size == FALLBACK_SIZE
