"""The engine on diffusion transformers: SD3, FLUX, PixArt, SANA and two families no preset names.

Every tiny preset (and the QwenImage / FLUX.2 [klein] folders of tests/presetless.py) runs through
``Engine.generate`` with per-component and per-step timings; with a fake clock advanced inside each
component the timings are checked to the nanosecond. Engines come from the session's ``dit_engine``
fixture (one load per model); 64 px, 2 steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffprof.clock import FakeClock
from diffprof.engine import Engine
from diffprof.engine.anatomy import anatomy_of
from diffprof.engine.instrument import PipelineInstrumentation
from diffprof.errors import ConfigError, ModelError
from diffprof.models import FAMILIES, build_tiny, get_preset
from diffprof.models.loaded import LoadedPipeline
from diffprof.profiler import Profiler

DIT = ("tiny-sd3", "tiny-flux", "tiny-pixart", "tiny-sana")
FAST = dict(steps=2, width=64, height=64)
MS = 1_000_000


@pytest.mark.parametrize("name", DIT)
def test_every_tiny_dit_generates_with_per_component_and_per_step_timings(dit_engine, name):
    engine = dit_engine(name)
    spec = FAMILIES[get_preset(name).family]
    result = engine.generate(guidance=3.0, seed=1, **FAST)
    t = result.timing
    assert result.images[0].size == (64, 64) and result.latents is not None and torch.isfinite(result.latents).all()
    assert engine.anatomy.denoiser == "transformer" and engine.anatomy.family == spec.name
    assert len(t.steps_s) == 2 and len(t.unet_s) == t.denoiser_calls == 2  # CFG batches both halves: one evaluation per step
    assert set(t.text_encode_by) == {e.component for e in spec.text_encoders} and all(v > 0 for v in t.text_encode_by.values())
    assert sum(t.text_encode_by.values()) == pytest.approx(t.text_encode_s)
    assert t.vae_decode_s > 0 and t.vae_encode_s == 0
    assert 0 < t.text_encode_s + t.denoise_s + t.vae_decode_s <= t.total_s and t.other_s >= 0
    assert sum(t.unet_s) <= t.denoise_s
    stand_ins = {e.tokenizer for e in spec.text_encoders if e.kind in ("t5-xxl", "gemma-2-2b")}
    note = result.settings["stand_in_note"]
    assert note.startswith("stand-in tokenizers") and all(f"{tok} = " in note for tok in stand_ins)
    assert result.settings["family"] == spec.name and result.settings["width"] == 64


def fake_costs(engine: Engine, clock: FakeClock, text_ns: dict[str, int], eval_ns: int, vae_ns: int) -> list:
    """Pre-hooks (after the engine's own, so inside its spans) that advance ``clock`` by known amounts."""
    handles = [getattr(engine.base, c).register_forward_pre_hook(lambda *_, ns=ns: clock.advance(ns)) for c, ns in text_ns.items()]
    handles.append(getattr(engine.base, engine.anatomy.denoiser).register_forward_pre_hook(lambda *_: clock.advance(eval_ns)))
    handles.append(engine.anatomy.vae_parts["vae_decode"].register_forward_pre_hook(lambda *_: clock.advance(vae_ns)))
    return handles


@pytest.mark.parametrize("model, text_calls, evals_per_step", [
    ("tiny-flux", 1, 1),  # distilled guidance: no negative prompt, one evaluation per step
    ("tiny-sd3", 2, 1),  # CFG: the negative prompt encoded apart, both halves in one evaluation
    ("tiny-pixart", 2, 1),
    ("Flux2KleinPipeline", 2, 2),  # CFG as two evaluations per step
])
def test_components_and_steps_add_up_to_the_call_exactly_on_a_fake_clock(model, text_calls, evals_per_step, presetless_folders):
    """Nothing but the components moves the clock, so the call is exactly their sum: per encoder, per
    denoiser evaluation, per step (PixArt's steps end in its older callback; FLUX.2 [klein] runs its
    guidance halves as two evaluations per step) and VAE decode, with nothing left over."""
    clock = FakeClock()
    path = str(presetless_folders[model]) if model in presetless_folders else model
    engine = Engine.load(path, device="cpu", profiler=Profiler("standard", device="cpu", clock=clock, measure_overhead=False))
    encoders = engine.anatomy.text_encoders
    text_ns = {c: (i + 1) * MS for i, c in enumerate(encoders)}
    handles = fake_costs(engine, clock, text_ns, eval_ns=7 * MS, vae_ns=11 * MS)
    try:
        t = engine.generate(guidance=3.0, **FAST).timing
    finally:
        for h in handles:
            h.remove()
        engine.close()
    assert t.text_encode_by == {c: pytest.approx(text_calls * ns / 1e9) for c, ns in text_ns.items()}
    assert t.denoiser_calls == 2 * evals_per_step and t.unet_s == [pytest.approx(0.007)] * (2 * evals_per_step)
    assert t.steps_s == [pytest.approx(evals_per_step * 0.007)] * 2 and t.vae_decode_s == pytest.approx(0.011)
    assert t.total_s == pytest.approx(t.text_encode_s + t.denoise_s + t.vae_decode_s) and abs(t.other_s) < 1e-12


def test_a_pipeline_without_callbacks_gets_one_step_per_denoiser_call():
    """No callback_on_step_end or callback: each evaluation opens the next step, and VAE decode closes the last."""
    clock = FakeClock()
    profiler = Profiler("standard", device="cpu", clock=clock, measure_overhead=False)
    pipe = torch.nn.Module()
    pipe.text_encoder, pipe.transformer = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    pipe.vae = torch.nn.Module()
    pipe.vae.decoder = torch.nn.Linear(2, 2)
    anatomy = type("A", (), {"text_encoders": ("text_encoder",), "denoiser": "transformer", "step_hook": "none",
                             "vae_parts": {"vae_decode": pipe.vae.decoder}})()
    inst = PipelineInstrumentation(pipe, profiler, anatomy=anatomy)
    assert inst.callback_kwargs() == {}
    x = torch.zeros(1, 2)
    with inst.call() as state:
        pipe.text_encoder(x)
        for ns in (3, 5, 2):
            clock.advance(ns * MS)  # scheduler and set-up between evaluations count to the step
            pipe.transformer(x)
        clock.advance(4 * MS)
        pipe.vae.decoder(x)
    steps = [r for r in profiler.records if r.name == "denoising_step"]
    assert [r.labels["step"] for r in steps] == [0, 1, 2] and [r.wall_ns for r in steps] == [5 * MS, 2 * MS, 4 * MS]
    assert state.unet_calls == 3 and state.inputs.calls == {"text_encoder": 1, "transformer": 3, "vae_decode": 1}


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
@pytest.mark.parametrize("task", ["img2img", "inpaint"])
def test_flux_and_sd3_run_img2img_and_inpaint_through_their_own_classes(dit_engine, name, task):
    engine = dit_engine(name)
    result = engine.generate(task=task, strength=1.0, **FAST)
    family = get_preset(name).family
    assert type(engine.pipeline_for(task)).__name__ == FAMILIES[family].pipelines[task]
    assert engine.pipeline_for(task).transformer is engine.base.transformer  # from_pipe: no second copy
    t = result.timing
    assert result.images[0].size == (64, 64) and t.vae_encode_s > 0 and len(t.steps_s) == 2 and result.settings["task"] == task


def test_tasks_a_family_lacks_are_refused_by_name(dit_engine, presetless_folders):
    with pytest.raises(ModelError, match="the pixart family has no img2img pipeline in diffusers"):
        dit_engine("tiny-pixart").generate(task="img2img", **FAST)
    klein = dit_engine(str(presetless_folders["Flux2KleinPipeline"]))
    with pytest.raises(ConfigError, match="diffusers has no img2img pipeline for Flux2KleinPipeline") as err:
        klein.generate(task="img2img", **FAST)  # the AutoPipeline maps it to itself (image = a reference)
    assert "txt2img" in err.value.hint
    inpaint = klein.generate(task="inpaint", strength=1.0, **FAST)  # Flux2KleinInpaintPipeline: no AutoPipeline entry
    assert type(klein.pipeline_for("inpaint")).__name__ == "Flux2KleinInpaintPipeline" and len(inpaint.timing.steps_s) == 2
    with pytest.raises(ConfigError, match="Flux2KleinPipeline takes no negative prompt"):
        klein.generate(negative_prompt="blurry", **FAST)


@pytest.mark.parametrize("name, size, multiple", [("tiny-flux", (72, 64), 16), ("tiny-sd3", (64, 40), 16), ("tiny-sana", (48, 64), 32)])
def test_sizes_the_transformer_cannot_tile_are_refused_with_the_reason(dit_engine, name, size, multiple):
    width, height = size
    with pytest.raises(ConfigError) as err:
        dit_engine(name).generate(steps=1, width=width, height=height)
    bad = f"width {width}" if width % multiple else f"height {height}"
    assert err.value.message == (f"{bad} must be a multiple of {multiple} for {name}: a diffusion transformer tiles the image into "
                                 "tokens of VAE factor x patch x packing pixels a side, and its pipeline checks the sides")


def test_pixart_and_sana_compute_the_size_they_report(dit_engine):
    """Resolution binning is off (call_options): a 64x96 request denoises a 64x96 latent grid."""
    for name, factor in (("tiny-pixart", 8), ("tiny-sana", 8)):
        engine = dit_engine(name)
        assert engine.anatomy.call_options == {"use_resolution_binning": False, "clean_caption": False}
        result = engine.generate(steps=1, width=64, height=96, decode=False)
        assert tuple(result.latents.shape[-2:]) == (96 // factor, 64 // factor), name


def test_flux_schnell_passes_its_shorter_t5_sequence():
    """A preset's max_sequence_length reaches the call: schnell's T5 reads 256 tokens (dev's 512)."""
    from diffprof.engine.request import LoadInfo
    from diffprof.engine.switches import Optimizations

    schnell = LoadedPipeline(build_tiny("tiny-flux"), "flux", get_preset("flux-schnell"), "builtin:tiny-flux")
    assert anatomy_of(schnell).call_options == {"max_sequence_length": 256}
    engine = Engine(schnell, model="flux-schnell", device=torch.device("cpu"), precision="fp32", optimizations=Optimizations(),
                    profiler=Profiler("standard", device="cpu", measure_overhead=False), load_info=LoadInfo("flux-schnell", "test", "flux", 0.0, 0))
    inputs = engine.generate(steps=1, width=32, height=32, decode=False).inputs
    ((args, _),) = inputs.signatures["text_encoder_2"]
    assert args[0].shape == (1, 256) and inputs.signatures["transformer"][0][1]["encoder_hidden_states"].shape[1] == 256


@pytest.mark.parametrize("name", ["QwenImagePipeline", "Flux2KleinPipeline"])
def test_pipelines_no_preset_names_run_on_the_generic_path(dit_engine, presetless_folders, name):
    engine = dit_engine(str(presetless_folders[name]))
    a = engine.anatomy
    assert (a.family, a.pipeline_class, a.denoiser, a.text_encoders) == ("generic", name, "transformer", ("text_encoder",))
    assert a.flow and a.sets_sigmas and a.guidance == "pipeline" and a.step_hook == "on_step_end" and not a.stand_ins
    result = engine.generate(guidance=3.0, **FAST)
    t = result.timing
    assert result.images[0].size == (64, 64) and len(t.steps_s) == 2 and t.denoiser_calls >= 2
    assert t.text_encode_by.keys() == {"text_encoder"} and t.vae_decode_s > 0
    assert 0 < t.text_encode_s + t.denoise_s + t.vae_decode_s <= t.total_s
    assert "stand_in_note" not in result.settings and result.settings["family"] == "generic"


def test_guidance_of_a_true_cfg_pipeline_is_the_guidance_that_runs(dit_engine, presetless_folders):
    """QwenImage guides with true_cfg_scale and a negative prompt (its guidance_scale is ignored): --guidance
    above 1 must run the unconditional pass, at or below 1 must not."""
    engine = dit_engine(str(presetless_folders["QwenImagePipeline"]))
    guided, plain = (engine.generate(guidance=g, decode=False, **FAST).timing.denoiser_calls for g in (3.0, 1.0))
    assert (guided, plain) == (4, 2)


def test_true_cfg_guidance_only_where_guidance_scale_is_not_the_pipeline_s_own():
    """ChromaInpaint takes true_cfg_scale too but guides with guidance_scale (default 7.0): left alone; a
    guidance-distilled denoiser keeps guidance_scale as its input and runs no true CFG."""
    from types import SimpleNamespace

    from diffprof.engine.calls import true_cfg_kwargs
    from diffprof.engine.request import GenerationRequest

    class QwenLike:
        def __call__(self, prompt=None, negative_prompt=None, true_cfg_scale=4.0, guidance_scale=None): ...

    class ChromaInpaintLike:
        def __call__(self, prompt=None, negative_prompt=None, true_cfg_scale=1.0, guidance_scale=7.0): ...

    anatomy = SimpleNamespace(denoiser="transformer")
    accepted = frozenset({"prompt", "negative_prompt", "true_cfg_scale", "guidance_scale"})

    def kwargs(cls, guidance_embeds=False, **req):
        pipe = cls()
        pipe.transformer = SimpleNamespace(config={"guidance_embeds": guidance_embeds})
        return true_cfg_kwargs(pipe, anatomy, GenerationRequest(**req), accepted)

    assert kwargs(QwenLike, guidance=3.0) == {"true_cfg_scale": 3.0, "guidance_scale": None, "negative_prompt": [""]}
    assert kwargs(QwenLike, guidance=3.0, negative_prompt="blurry") == {"true_cfg_scale": 3.0, "guidance_scale": None}
    assert kwargs(QwenLike, guidance=0.0) == {"true_cfg_scale": 1.0, "guidance_scale": None}
    assert kwargs(QwenLike, guidance_embeds=True, guidance=3.0) == {"true_cfg_scale": 1.0}
    assert kwargs(ChromaInpaintLike, guidance=3.0) == {}


def test_a_task_pipeline_the_autopipeline_does_not_map_is_found_by_diffusers_name():
    """diffusers has ChromaImg2ImgPipeline and ChromaInpaintPipeline, but no chroma in its AutoPipeline tables."""
    import diffusers

    from diffprof.engine.tasks import named_task_class

    assert named_task_class("ChromaPipeline", "img2img") is diffusers.ChromaImg2ImgPipeline
    assert named_task_class("ChromaPipeline", "inpaint") is diffusers.ChromaInpaintPipeline
    assert named_task_class("Lumina2Pipeline", "img2img") is None and named_task_class("Kandinsky3Pipeline", "inpaint") is None
    assert named_task_class("FluxKontextPipeline", "inpaint") is diffusers.FluxKontextInpaintPipeline  # takes image, strength, mask_image


def test_qwenimage_img2img_comes_from_diffusers_autopipeline(dit_engine, presetless_folders):
    engine = dit_engine(str(presetless_folders["QwenImagePipeline"]))
    result = engine.generate(task="img2img", strength=1.0, **FAST)
    assert type(engine.pipeline_for("img2img")).__name__ == "QwenImageImg2ImgPipeline"
    assert result.timing.vae_encode_s > 0 and len(result.timing.steps_s) == 2


def test_a_pipeline_diffprof_cannot_run_names_what_it_lacks(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    with pytest.raises(ModelError) as err:
        Engine.load(str(tmp_path / "ddpm"), device="cpu")
    assert err.value.message == f"diffprof cannot run DDPMPipeline (local:{tmp_path / 'ddpm'}): its __call__ takes no prompt, height, width"
    assert "text-to-image pipelines" in err.value.hint


@pytest.mark.parametrize("switch", ["attention_slicing", "eager_attention"])
def test_switches_that_reach_only_a_unet_are_refused_before_loading(switch):
    with pytest.raises(ConfigError) as err:
        Engine.load("tiny-flux", device="cpu", optimize=[switch, "vae_tiling"])
    assert err.value.message == (f"{switch} works on UNet models only: diffusers' sliced and eager attention "
                                 "reach the UNet's attention processors, not a transformer's")
    assert err.value.hint == f"drop {switch} for this model"


def test_fast_loop_on_a_transformer_runs_the_pipeline_loop_and_says_so(dit_engine):
    engine = Engine.load("tiny-sana", device="cpu", optimize=["fast_loop"])
    result = engine.generate(**FAST)
    assert result.settings["fast_path"] == "pipeline" and "txt2img on sana ran the pipeline's own loop" in result.settings["fast_path_note"]
    assert result.settings["fast_path_note"].startswith("diffprof's own loop covers SD/SDXL/SD3/FLUX txt2img only")
    assert len(result.timing.steps_s) == 2
    engine.close()


def test_same_seed_same_image_on_a_transformer(dit_engine):
    engine = dit_engine("tiny-flux")
    a, b = (np.asarray(engine.generate(seed=5, **FAST).images[0]) for _ in range(2))
    assert np.array_equal(a, b)


class _Coder(torch.nn.Module):
    """An autoencoder as the generic path sees one: an encoder, a decoder and ``decode``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = torch.nn.Identity(), torch.nn.Identity()
        self.config = {"block_out_channels": [4, 4, 4, 4]}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class _Denoiser(torch.nn.Module):
    config: dict = {"in_channels": 4}  # a UNet config that names no sample size (Kandinsky 3's)


class _MovqPipeline:
    """Kandinsky 3's shape: its autoencoder is ``movq``, not ``vae``, and it has no ``vae_scale_factor``."""

    def __init__(self) -> None:
        self.unet, self.movq, self.text_encoder = _Denoiser(), _Coder(), torch.nn.Linear(1, 1)
        self.scheduler = type("S", (), {"config": {"_class_name": "DDPMScheduler"}})()

    @property
    def components(self) -> dict:
        return {"unet": self.unet, "movq": self.movq, "text_encoder": self.text_encoder, "scheduler": self.scheduler}

    def __call__(self, prompt=None, num_inference_steps=25, height=1024, width=1024, generator=None, output_type="pil",
                 callback_on_step_end=None):
        raise NotImplementedError


def test_a_generic_pipeline_s_autoencoder_and_size_come_from_its_components_and_call():
    a = anatomy_of(LoadedPipeline(_MovqPipeline(), "generic", None, "local:k3"))
    pipe_movq = a.vae_parts["vae_decode"]
    assert isinstance(pipe_movq, torch.nn.Identity) and set(a.vae_parts) == {"vae_encode", "vae_decode"}
    assert (a.denoiser, a.text_encoders, a.native_size, a.size_multiple) == ("unet", ("text_encoder",), 1024, 8)


class _BinningPipeline(_MovqPipeline):
    def __call__(self, prompt=None, num_inference_steps=25, height=1024, width=1024, generator=None, output_type="pil",
                 use_resolution_binning=True, callback_on_step_end=None):  # HunyuanDiT: snaps sizes to trained bins
        raise NotImplementedError


def test_a_generic_pipeline_that_bins_sizes_is_called_without_binning_and_a_resized_result_is_refused():
    from PIL import Image

    from diffprof.engine.refusals import check_ran_size

    assert anatomy_of(LoadedPipeline(_BinningPipeline(), "generic", None, "local:h")).call_options == {"use_resolution_binning": False}
    check_ran_size([Image.new("RGB", (64, 32))], 64, 32, "P")
    with pytest.raises(ModelError) as err:
        check_ran_size([Image.new("RGB", (16, 16))], 64, 64, "Kandinsky3Pipeline")
    assert err.value.message.startswith("Kandinsky3Pipeline returned 16x16 images for the 64x64 asked")


def test_a_swapped_scheduler_that_cannot_take_what_a_generic_pipeline_hands_it_is_refused_by_name():
    """Real schedulers failing as the pipelines found failing made them (SANA-Sprint hands DDIM's
    set_timesteps max_timesteps; Kandinsky 3 hands PNDM's step a generator; Z-Image hands UniPC's flow
    set_timesteps a list of sigmas it cannot scale): each becomes a ConfigError naming the method;
    an error the scheduler did not raise passes unchanged, and so does every error of a family's
    pipeline. An indexing error above the native size is refused as that size's."""
    from types import SimpleNamespace

    from diffprof.engine.refusals import generic_call
    from diffprof.engine.schedulers import SchedulerKind, make_scheduler

    def anatomy(cls: str, flow: bool = False, spec: object = None) -> SimpleNamespace:
        return SimpleNamespace(pipeline_class=cls, scheduler_kind=SchedulerKind(flow, False), spec=spec, native_size=64, size_multiple=16)

    def scheduler_refusals(scheduler, name, anatomy, own, task, size=64):
        return generic_call(anatomy, scheduler, name, own, task, size, size)

    noise = anatomy("SanaSprintPipeline")
    ddim = make_scheduler("ddim", {"_class_name": "DDPMScheduler"})
    with pytest.raises(ConfigError) as err, scheduler_refusals(ddim, "ddim", noise, "SCMScheduler", "txt2img"):
        ddim.set_timesteps(2, device="cpu", max_timesteps=1.57, intermediate_timesteps=1.3)
    assert err.value.message == ("scheduler ddim cannot run SanaSprintPipeline: the pipeline hands DDIMScheduler.set_timesteps "
                                 "max_timesteps, which it does not take")
    assert err.value.hint == "use --scheduler default (the pipeline's own SCMScheduler)"  # no registered scheduler takes it

    pndm = make_scheduler("pndm", {"_class_name": "DDPMScheduler"})
    pndm.set_timesteps(2)
    k3 = anatomy("Kandinsky3Pipeline")
    with pytest.raises(ConfigError) as err, scheduler_refusals(pndm, "pndm", k3, "DDPMScheduler", "txt2img"):
        pndm.step(torch.zeros(1, 4, 2, 2), pndm.timesteps[0], torch.zeros(1, 4, 2, 2), generator=torch.Generator())
    assert err.value.message.endswith("the pipeline hands PNDMScheduler.step generator, which it does not take")
    takers = err.value.hint.split("schedulers whose step takes generator: ")[1].split(", ")
    assert "pndm" not in takers and {"euler_a", "ddpm"} <= set(takers)

    unipc = make_scheduler("flow_unipc", {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0})
    flow = anatomy("ZImagePipeline", flow=True)
    with pytest.raises(ConfigError) as err, scheduler_refusals(unipc, "flow_unipc", flow, "FlowMatchEulerDiscreteScheduler", "txt2img"):
        unipc.set_timesteps(sigmas=[1.0, 0.5], device="cpu")  # an error inside the method: its frame names it
    assert err.value.message.startswith("scheduler flow_unipc cannot run ZImagePipeline: UniPCMultistepScheduler.set_timesteps failed "
                                        "on what the pipeline hands it (TypeError")

    with pytest.raises(TypeError, match="not the scheduler"), scheduler_refusals(ddim, "ddim", noise, "SCMScheduler", "txt2img"):
        raise TypeError("not the scheduler")
    with pytest.raises(TypeError), scheduler_refusals(ddim, "ddim", anatomy("FluxPipeline", spec="flux"), "SCMScheduler", "txt2img"):
        ddim.set_timesteps(2, max_timesteps=1.57)  # a family's pipeline: left as it is

    # above the native size, an indexing error is the size's (AuraFlow's position table); at it, it is not
    table = torch.zeros(16)
    with pytest.raises(ModelError) as err, scheduler_refusals(ddim, "default", anatomy("AuraFlowPipeline"), "X", "txt2img", size=128):
        table[256]
    assert err.value.message == ("AuraFlowPipeline failed at 128x128, larger than its native 64x64 (IndexError: index 256 is out of "
                                 "bounds for dimension 0 with size 16)")
    assert "try --width/--height 64" in err.value.hint
    with pytest.raises(IndexError), scheduler_refusals(ddim, "default", anatomy("AuraFlowPipeline"), "X", "txt2img", size=64):
        table[256]
