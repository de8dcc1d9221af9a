"""Flow-matching schedulers in the registry, and which schedulers each kind of model takes."""

from __future__ import annotations

import pytest

from diffprof.engine.schedulers import (
    FLOW_DEFAULTS,
    SCHEDULERS,
    SchedulerKind,
    applicable,
    check_applies,
    for_reference,
    kind_of_model,
    make_scheduler,
    model_evals,
)
from diffprof.errors import ConfigError
from diffprof.models import get_preset

FLOW = [n for n, s in SCHEDULERS.items() if s.flow]
NOISE = [n for n, s in SCHEDULERS.items() if not s.flow]
FLUX_KIND = SchedulerKind(flow=True, sets_sigmas=True)
#: Flow solvers whose set_timesteps takes no sigmas: FLUX's pipelines cannot hand them their schedule.
NO_SIGMAS = {"flow_heun", "flow_dpmpp_2m", "flow_dpm_single", "flow_deis"}


def test_each_kind_of_model_takes_its_own_solvers():
    assert applicable(SchedulerKind(flow=False)) == NOISE
    assert applicable(SchedulerKind(flow=True)) == FLOW
    assert applicable(FLUX_KIND) == [n for n in FLOW if n not in NO_SIGMAS]
    assert kind_of_model("tiny-sd") == SchedulerKind(False) and kind_of_model("tiny-pixart") == SchedulerKind(False)
    assert kind_of_model("flux-dev") == FLUX_KIND and kind_of_model("sd35-large") == SchedulerKind(True)
    assert kind_of_model("sana") == SchedulerKind(True) and kind_of_model("no/such-repo") is None


def test_folders_are_told_apart_by_their_scheduler_config(presetless_folders, tmp_path):
    assert kind_of_model(str(presetless_folders["QwenImagePipeline"])) == SchedulerKind(True, True)  # no family: assumed to set sigmas
    from diffprof.models.materialize import materialize

    assert kind_of_model(str(materialize("tiny-flux", tmp_path / "flux"))) == FLUX_KIND  # the family's, from model_index.json
    assert kind_of_model(str(materialize("tiny-sana", tmp_path / "sana"))) == SchedulerKind(True)  # DPM-Solver on flow sigmas


@pytest.mark.parametrize("name, kind, message", [
    ("ddim", FLUX_KIND, "scheduler ddim is a noise-schedule solver and flux-dev is a flow-matching model: it would integrate the wrong equation"),
    ("flow_euler", SchedulerKind(False), "scheduler flow_euler is a flow-matching solver and flux-dev is a noise-schedule model: it would "
                                         "integrate the wrong equation"),
    ("flow_heun", FLUX_KIND, "scheduler flux-dev's pipeline sets its own sigma schedule, which FlowMatchHeunDiscreteScheduler.set_timesteps cannot take"),
])
def test_a_scheduler_of_the_wrong_kind_is_refused_with_the_ones_that_fit(name, kind, message):
    with pytest.raises(ConfigError) as err:
        check_applies(name, kind, "flux-dev")
    assert err.value.message == message
    assert err.value.hint == f"{kind.name} schedulers for flux-dev: {', '.join(applicable(kind))} (or default)"
    check_applies("default", kind, "flux-dev")  # the model's own always fits


def test_flow_solvers_carry_the_models_shift_and_dynamic_shifting():
    sd3 = get_preset("sd35-large").component_config("scheduler")  # FlowMatchEuler, shift 3.0
    sana = get_preset("sana").component_config("scheduler")  # DPM-Solver, flow_shift 3.0
    flux = get_preset("flux-dev").component_config("scheduler")  # dynamic shifting
    dpm = make_scheduler("flow_dpmpp_2m", sd3)
    assert type(dpm).__name__ == "DPMSolverMultistepScheduler" and dpm.config.flow_shift == 3.0
    assert dpm.config.use_flow_sigmas and dpm.config.prediction_type == "flow_prediction"
    assert make_scheduler("flow_euler", sana).config.shift == 3.0 and make_scheduler("flow_heun", sd3).config.shift == 3.0
    unipc = make_scheduler("flow_unipc", flux)
    assert unipc.config.use_dynamic_shifting and unipc.config.flow_shift == flux["shift"]
    assert make_scheduler("flow_euler_karras", flux).config.use_karras_sigmas


@pytest.mark.parametrize("name", FLOW)
def test_flow_solvers_count_their_denoiser_evaluations(name):
    config = get_preset("flux-dev").component_config("scheduler")  # dynamic shifting: counted at any mu
    evals = model_evals(name, 4, config)
    assert evals == (2 * 4 - 1 if SCHEDULERS[name].evals_per_step == 2 else 4)


def test_default_references_follow_the_kind():
    assert for_reference("dpmpp_2m", SchedulerKind(False)) == "dpmpp_2m"
    assert for_reference("dpmpp_2m", SchedulerKind(True)) == "flow_dpmpp_2m"
    assert for_reference("dpmpp_2m", FLUX_KIND) == "flow_euler"  # DPM-Solver takes no sigmas; FLUX sets them
    assert set(FLOW_DEFAULTS) <= set(FLOW)
    assert all(SCHEDULERS[SCHEDULERS[n].counterpart].counterpart == n for n in SCHEDULERS if SCHEDULERS[n].counterpart and
               SCHEDULERS[SCHEDULERS[n].counterpart].counterpart)


@pytest.mark.parametrize("name", ["tiny-sd3", "tiny-flux", "tiny-sana"])
def test_every_flow_solver_that_applies_runs_on_each_flow_model(dit_engine, name):
    engine = dit_engine(name)
    for scheduler in applicable(engine.anatomy.scheduler_kind):
        t = engine.generate(scheduler=scheduler, steps=2, width=32, height=32).timing
        expected = 3 if SCHEDULERS[scheduler].evals_per_step == 2 else 2
        assert len(t.steps_s) == t.denoiser_calls == expected, scheduler
        assert type(engine.base.scheduler).__name__ == SCHEDULERS[scheduler].class_name
    engine.generate(scheduler="default", steps=1, width=32, height=32)
    assert type(engine.base.scheduler).__name__ == get_preset(name).model_index()["scheduler"][1]


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
def test_img2img_on_flow_models_takes_the_flowmatch_solvers(dit_engine, name):
    """Flow-matching img2img noises the init image with the scheduler's scale_noise (FlowMatch classes only)."""
    engine = dit_engine(name)
    kind = engine.anatomy.scheduler_kind
    assert applicable(kind, "img2img") == [n for n in applicable(kind) if SCHEDULERS[n].class_name.startswith("FlowMatch")]
    for scheduler in applicable(kind, "img2img"):
        result = engine.generate(task="img2img", scheduler=scheduler, strength=1.0, steps=2, width=32, height=32)
        assert len(result.timing.steps_s) == (3 if scheduler == "flow_heun" else 2), scheduler
    with pytest.raises(ConfigError, match="flow_unipc cannot run inpaint on .*scale_noise, which UniPCMultistepScheduler lacks"):
        engine.generate(task="inpaint", scheduler="flow_unipc", steps=1, width=32, height=32)


def test_pixart_takes_noise_solvers_and_steps_follow_its_older_callback(dit_engine):
    """PixArt's ``callback`` fires once per solver order: Heun's three evaluations over 2 steps are 2 steps."""
    engine = dit_engine("tiny-pixart")
    assert engine.anatomy.step_hook == "legacy" and not engine.anatomy.flow
    for scheduler in ("euler", "ddim", "dpmpp_2m", "unipc"):
        t = engine.generate(scheduler=scheduler, steps=2, width=32, height=32).timing
        assert len(t.steps_s) == t.denoiser_calls == 2, scheduler
    t = engine.generate(scheduler="heun", steps=2, width=32, height=32).timing
    assert (len(t.steps_s), t.denoiser_calls) == (2, 3) and sum(t.unet_s) <= t.denoise_s
    with pytest.raises(ConfigError, match="flow_euler is a flow-matching solver and tiny-pixart is a noise-schedule model"):
        engine.generate(scheduler="flow_euler", steps=1)
