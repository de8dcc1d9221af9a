"""Suites, checks and commands on the diffusion-transformer families (tiny presets, 2 steps, CPU).

The must-show of issue 21 on the CPU: every new preset's tiny variant through ``generate`` and the
schedulers and memory suites (here), ``calibrate`` + ``estimate`` (test_estimate_dit.py), and the
generic path on QwenImage and FLUX.2 (test_engine_dit.py, and their sweep below).
"""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from diffprof.cli.app import main
from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.report.tables import suite_tables
from diffprof.store import Store
from diffprof.suites import expand
from diffprof.suites.calibration import plan
from diffprof.suites.checks import check_config
from diffprof.suites.runner import Runner

DIT = ("tiny-sd3", "tiny-flux", "tiny-pixart", "tiny-sana")
BASE = dict(steps=2, width=64, height=64, repeats=1, warmup=0, threads=1, report=None, device="cpu", quality=["none"])


def config(**kw) -> RunConfig:
    return RunConfig.from_mapping({**BASE, **kw})


def run_suites(tmp_path, **kw):
    cfg = config(db=str(tmp_path / "s.db"), **kw)
    with Store(cfg.db) as store:
        summary = Runner(cfg, store, console=Console(file=StringIO()), progress=False).run()
        return store.get_run(summary.run_id)


# ----------------------------------------------------------------------------- cells
@pytest.mark.parametrize("model, schedulers", [
    ("tiny-flux", ["flow_euler", "flow_unipc", "flow_euler_karras"]),  # FLUX sets its own sigmas: no Heun, no DPM-Solver
    ("tiny-sd3", ["flow_euler", "flow_heun", "flow_dpmpp_2m", "flow_unipc", "flow_euler_karras"]),
    ("tiny-pixart", RunConfig.default_of("schedulers")),  # a noise-schedule model keeps the default list
])
def test_the_schedulers_suite_sweeps_what_the_model_takes(model, schedulers):
    assert [c.labels["scheduler"] for c in expand(config(model=model, suites=["schedulers"]))] == schedulers


def test_a_named_scheduler_the_model_cannot_take_is_refused_before_anything_runs():
    with pytest.raises(ConfigError) as err:
        expand(config(model="tiny-flux", suites=["schedulers"], schedulers=["flow_euler", "ddim"]))
    assert err.value.message == ("scheduler ddim is a noise-schedule solver and tiny-flux is a flow-matching model: "
                                 "it would integrate the wrong equation")
    assert err.value.hint.startswith("flow-matching schedulers for tiny-flux: flow_euler, flow_euler_karras")


def test_sizes_follow_the_models_token():
    assert [c.labels["width"] for c in expand(config(model="flux-dev", suites=["resolutions"], width=None, height=None))] == [512, 1024, 1536]
    assert [c.labels["width"] for c in expand(config(model="tiny-sana", suites=["resolutions"], width=None, height=None))] == [32, 64, 96]
    points = plan(config(model="sd35-large", suites=["calibration"]))  # a full-size model on a CPU: 0.25x-0.5x native
    assert sorted(points) == [(256, 256, 1), (256, 256, 2), (384, 384, 1), (384, 384, 2), (512, 512, 1), (512, 512, 2)]


def test_memory_and_tasks_defaults_keep_what_the_model_runs():
    memory = [c.labels["optimization"] for c in expand(config(model="tiny-flux", suites=["memory"]))]
    # on CPU: no offloads, no UNet-only attention slicing, no T5 to drop on FLUX, no fp8; float8 storage and int8 weights run
    assert memory == ["none", "vae_slicing", "vae_tiling", "layerwise_casting", "int8_weights"]
    sd3 = [c.labels["optimization"] for c in expand(config(model="tiny-sd3", suites=["memory"]))]
    assert sd3 == ["none", "vae_slicing", "vae_tiling", "drop_t5", "layerwise_casting", "int8_weights"]
    assert [c.labels["task"] for c in expand(config(model="tiny-pixart", suites=["tasks"]))] == ["txt2img"]
    assert [c.labels["task"] for c in expand(config(model="tiny-flux", suites=["tasks"]))] == ["txt2img", "img2img", "inpaint"]
    with pytest.raises(ConfigError, match="tiny-sana has no img2img pipeline in diffusers"):
        expand(config(model="tiny-sana", suites=["tasks"], tasks=["txt2img", "img2img"]))


@pytest.mark.parametrize("changes, message", [
    ({"model": "flux-dev", "width": 1000}, "width 1000 must be a multiple of 16 for flux-dev"),
    ({"model": "sana", "resolutions": ["1024x1000"]}, "height 1000 must be a multiple of 32 for sana"),
    ({"model": "sd35-large", "scheduler": "euler"}, "scheduler euler is a noise-schedule solver and sd35-large is a flow-matching model"),
    ({"model": "flux-dev", "scheduler": "flow_dpmpp_2m"}, "scheduler flux-dev's pipeline sets its own sigma schedule"),
    ({"model": "sd35-medium", "task": "img2img", "scheduler": "flow_unipc"}, "flow_unipc cannot run img2img on sd35-medium"),
    ({"model": "pixart-sigma", "task": "inpaint"}, "pixart-sigma has no inpaint pipeline in diffusers"),
    ({"model": "flux-dev", "optimize": ["attention_slicing"]}, "attention_slicing works on UNet models only"),
    ({"model": "flux-dev", "reference_scheduler": "dpmpp_2m_karras"}, "scheduler dpmpp_2m_karras is a noise-schedule solver and flux-dev"),
])
def test_check_config_refuses_what_the_models_configs_rule_out(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_config(config(**changes))


def test_check_config_lets_the_default_reference_adapt():
    check_config(config(model="flux-dev", width=1024, height=1024))  # reference_scheduler dpmpp_2m: becomes flow_euler there


# ----------------------------------------------------------------------------- measured
@pytest.mark.parametrize("model", DIT)
def test_schedulers_and_memory_suites_measure_every_tiny_dit(tmp_path, model):
    extra = {"schedulers": ["euler", "dpmpp_2m"]} if model == "tiny-pixart" else {}  # flow models: their default list
    # isolate=False: one process, not a fresh worker per memory cell (test_suites proves isolation)
    run = run_suites(tmp_path, model=model, suites=["schedulers", "memory"], isolate=False, **extra)
    expected = [c.labels for c in expand(config(model=model, suites=["schedulers", "memory"], **extra))]
    assert [c.labels for c in run.cells] == expected and all(c.ok for c in run.cells), [c.error for c in run.cells]
    for cell in run.cells:
        m = cell.metrics
        assert m["step_median_s"] > 0 and m["text_encode_s"] > 0 and m["vae_decode_s"] > 0 and m["flops_per_image"] > 0
        assert m["unet_evals"] == (3.0 if cell.labels.get("scheduler") == "flow_heun" else 2.0)
        if cell.labels.get("optimization") == "drop_t5":  # SD3 without its T5: the stand-in tokenizer went with it
            assert "stand_in_note" not in cell.settings and cell.metrics["text_encode_s"] > 0
            continue
        assert cell.settings["stand_in_note"].startswith("stand-in tokenizers")
    for table in suite_tables(run):
        assert [n for n in table.notes if n.startswith("stand-in")] == [run.cells[0].settings["stand_in_note"]]  # once per table


def test_guidance_steps_batch_and_tasks_suites_on_flux(tmp_path):
    run = run_suites(tmp_path, model="tiny-flux", suites=["guidance", "steps", "batch", "tasks"], guidance_scales=[1.0, 3.5],
                     step_counts=[1, 2], batch_sizes=[1, 2], quality=["convergence"], quality_prompts=1, reference_steps=3)
    assert all(c.ok for c in run.cells), [c.error for c in run.cells]
    by = {(c.suite, tuple(c.labels.values())): c for c in run.cells}
    guided = by[("guidance", (3.5,))]
    assert guided.settings["quality"]["reference"].startswith("flow_euler, 3 steps") and "psnr_db" in guided.metrics
    assert by[("guidance", (1.0,))].metrics["unet_evals"] == guided.metrics["unet_evals"] == 2.0  # distilled: no second evaluation
    assert by[("steps", (1,))].metrics["unet_evals"] == 1.0 and by[("batch", (2,))].settings["batch"] == 2
    assert by[("tasks", ("img2img",))].metrics["vae_encode_s"] > 0


def test_the_generic_path_sweeps_too(tmp_path, presetless_folders):
    folder = str(presetless_folders["QwenImagePipeline"])
    run = run_suites(tmp_path, model=folder, suites=["schedulers", "steps"], step_counts=[1, 2], width=32, height=32)
    assert [c.labels["scheduler"] for c in run.cells if c.suite == "schedulers"] == ["flow_euler", "flow_unipc", "flow_euler_karras"]
    assert all(c.ok for c in run.cells), [c.error for c in run.cells]
    assert all(c.metrics["flops_per_image"] > 0 and c.settings["family"] == "generic" for c in run.cells)


@pytest.mark.parametrize("model", DIT)
def test_generate_prints_every_text_encoder_and_the_stand_in_note(model, tmp_path, capsys):
    capsys.readouterr()
    code = main(["generate", "a red circle", "--model", model, "--device", "cpu", "--steps", "2", "--width", "64", "--height", "64",
                 "--threads", "1", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "denoising step (median)" in out and "VAE decode" in out and "wrote 1 image(s)" in out
    encoders = {"tiny-sd3": ["text_encoder (clip-l)", "text_encoder_2 (clip-g)", "text_encoder_3 (t5-xxl)"],
                "tiny-flux": ["text_encoder (clip-l)", "text_encoder_2 (t5-xxl)"]}.get(model, [])
    assert all(e in out for e in encoders)
    assert "note: stand-in tokenizers" in " ".join(err.split())
    assert (tmp_path / "out" / "0001-00-seed0.json").is_file()


def test_tune_searches_flow_schedulers_on_flux(tmp_path):
    from diffprof.tune import SearchSpace, tune

    import torch

    space = SearchSpace.for_device(torch.device("cpu"), model="tiny-flux", steps=[1, 2], precisions=["fp32"], baseline_steps=3)
    assert space.schedulers == ("flow_unipc", "flow_euler", "flow_euler_karras") and space.optimizations == ("none", "channels_last")
    small = SearchSpace.for_device(torch.device("cpu"), model="tiny-flux", schedulers=["flow_euler"], steps=[1, 2, 4], precisions=["fp32"],
                                   optimizations=["none"], baseline_steps=4)
    cfg = config(model="tiny-flux", width=32, height=32, reference_steps=8, db=str(tmp_path / "t.db"))
    result = tune(cfg, metric="convergence", prompts=1, screen_prompts=1, space=small, store=cfg.db)
    assert result.chosen is not None and result.baseline.setting.scheduler == "default"
    assert {c.setting.scheduler for c in result.candidates} == {"default", "flow_euler"} and all(c.ok for c in result.candidates)
    assert all(c.quality > 0 for c in result.candidates)  # PSNR against the flow_euler reference solve
    assert "note: stand-in tokenizers" in result.summary()
    with pytest.raises(ConfigError, match="ddim is a noise-schedule solver"):
        SearchSpace.for_device(torch.device("cpu"), model="tiny-flux", schedulers=["ddim"])
