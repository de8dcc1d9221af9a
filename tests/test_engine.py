"""Engine on the built-in tiny models: every task, schedulers, instrumentation, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffprof.clock import FakeClock
from diffprof.engine import SCHEDULERS, Engine, GenerationRequest
from diffprof.engine.apply import CONV_BLOCKS
from diffprof.engine.fast import GRAPH_SAFE
from diffprof.errors import ConfigError, InputError
from diffprof.profiler import Profiler

FAST = dict(steps=2, width=64, height=64, guidance=5.0)


@pytest.fixture(scope="module")
def sd() -> Engine:
    return Engine.load("tiny-sd", device="cpu", profiler=Profiler("standard", device="cpu", measure_overhead=False))


@pytest.fixture(scope="module")
def sdxl() -> Engine:
    return Engine.load("tiny-sdxl", device="cpu", profiler=Profiler("standard", device="cpu", measure_overhead=False))


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m", "ddim"])
def test_every_task_on_both_families(request, family, task, scheduler):
    engine = request.getfixturevalue(family)
    result = engine.generate(task=task, scheduler=scheduler, seed=1, strength=1.0, **FAST)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    t = result.timing
    assert len(t.steps_s) == 2 and all(s > 0 for s in t.steps_s)
    assert t.text_encode_s > 0 and t.vae_decode_s > 0
    assert (t.vae_encode_s > 0) == (task != "txt2img")
    assert result.settings["task"] == task and result.settings["scheduler"] == scheduler
    assert result.latents is not None and torch.isfinite(result.latents).all()


def test_a_task_the_fast_loop_does_not_cover_says_so():
    """-O fast with img2img: the pipeline's own loop runs (compiled, ungraphed), and the result says
    why, so tables and `generate` show it under the timings instead of leaving it to be guessed."""
    engine = Engine.load("tiny-sd", device="cpu", optimize=["fast_loop"])
    result = engine.generate(task="img2img", scheduler="euler", seed=1, strength=1.0, **FAST)
    assert result.settings["fast_path"] == "pipeline"
    assert result.settings["fast_path_note"] == "diffprof's own loop covers SD/SDXL/SD3/FLUX txt2img only; img2img on sd ran the pipeline's own loop"
    assert "fast_path_note" not in engine.generate(scheduler="euler", seed=1, **FAST).settings


def test_every_scheduler_runs(sd):
    from diffprof.engine.schedulers import applicable

    noise = applicable(sd.anatomy.scheduler_kind)
    assert noise == [n for n, s in SCHEDULERS.items() if not s.flow]  # flow-matching solvers are the DiT families' (test_engine_dit)
    for name in noise:
        spec = SCHEDULERS[name]
        result = sd.generate(scheduler=name, **FAST)
        assert result.images[0].size == (64, 64), name
        expected = 2 * spec.evals_per_step - 1 if spec.evals_per_step == 2 else len(result.timing.steps_s)
        assert len(result.timing.steps_s) == expected, name


def test_scheduler_swap_keeps_weights(sd):
    unet = sd.base.unet
    sd.generate(scheduler="unipc", **FAST)
    sd.generate(scheduler="ddim", **FAST)
    assert sd.base.unet is unet and type(sd.base.scheduler).__name__ == "DDIMScheduler"


def test_n_steps_give_n_records_on_consecutive_calls(sd):
    for _ in range(2):
        before = len(sd.profiler.records)
        result = sd.generate(scheduler="euler", steps=5, width=64, height=64)
        steps = [r for r in sd.profiler.records[before:] if r.name == "denoising_step"]
        assert [r.labels["step"] for r in steps] == [0, 1, 2, 3, 4]
        outer = result.timing.timeline
        assert sum(1 for e in outer if e["name"] == "denoising_step") == 5


def test_steps_tile_the_loop_with_no_gap():
    """Step i closes in the callback that opens step i+1, so nothing timed falls between steps: with
    a clock that moves only inside the UNet, each step starts exactly where the last ended and lasts
    exactly its UNet's time (a wall-clock bound on the gap failed on a loaded machine)."""
    clock = FakeClock()
    engine = Engine.load("tiny-sd", device="cpu", clock=clock)
    costs = iter([3_000, 5_000, 7_000, 11_000, 13_000])
    handle = engine.base.unet.register_forward_pre_hook(lambda *_: clock.advance(next(costs)))
    try:
        result = engine.generate(scheduler="euler", steps=5, width=32, height=32, guidance=1.0)
    finally:
        handle.remove()
    steps = [e for e in result.timing.timeline if e["name"] == "denoising_step"]
    assert [round(e["dur_s"] * 1e9) for e in steps] == [3_000, 5_000, 7_000, 11_000, 13_000]
    ns = [(round(e["start_s"] * 1e9), round((e["start_s"] + e["dur_s"]) * 1e9)) for e in steps]
    assert all(start == end for (_, end), (start, _) in zip(ns, ns[1:]))
    assert result.timing.total_s == pytest.approx(39_000 / 1e9, rel=1e-12) and result.timing.other_s == pytest.approx(0, abs=1e-15)


def test_same_seed_same_image_and_batches(sd):
    a = sd.generate(seed=7, **FAST).images[0]
    b = sd.generate(seed=7, **FAST).images[0]
    c = sd.generate(seed=8, **FAST).images[0]
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))
    result = sd.generate(prompt=["a red circle", "a blue square"], num_images=2, negative_prompt="blurry", **FAST)
    assert len(result.images) == 4 and result.timing.images == 4
    assert result.settings["batch"] == 4


def test_inpaint_model_with_nine_channels():
    engine = Engine.load("tiny-sd-inpaint", device="cpu") if "tiny-sd-inpaint" in __import__("diffprof.models.presets", fromlist=["PRESETS"]).PRESETS else None
    if engine is None:
        pytest.skip("no 9-channel tiny preset registered")
    assert engine.is_inpaint_model
    result = engine.generate(task="inpaint", **FAST)
    assert result.images[0].size == (64, 64)
    with pytest.raises(ConfigError, match="inpainting model"):
        engine.generate(task="txt2img", **FAST)


def test_user_images_and_masks(sd, tmp_path):
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "init.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "small_mask.png")
    (tmp_path / "not_an_image.png").write_text("hello")
    r = sd.generate(task="img2img", image=str(tmp_path / "init.png"), scheduler="euler", steps=4, strength=0.5, guidance=5.0)
    assert r.images[0].size == (64, 64) and len(r.timing.steps_s) == 2  # strength 0.5 of 4 steps
    r = sd.generate(task="inpaint", image=str(tmp_path / "init.png"), mask=str(tmp_path / "mask.png"), **{k: v for k, v in FAST.items() if k not in ("width", "height")})
    assert r.images[0].size == (64, 64)
    with pytest.raises(InputError, match="mask is 32x32 but the image is 64x64"):
        sd.generate(task="inpaint", image=str(tmp_path / "init.png"), mask=str(tmp_path / "small_mask.png"), steps=2)
    with pytest.raises(InputError, match="does not exist"):
        sd.generate(task="img2img", image=str(tmp_path / "nope.png"), steps=2)
    with pytest.raises(InputError, match="not an image"):
        sd.generate(task="img2img", image=str(tmp_path / "not_an_image.png"), steps=2)


@pytest.mark.parametrize("bad, error, fragment", [
    (dict(width=60), ConfigError, "multiple of 8"),
    (dict(scheduler="eulr"), ConfigError, "did you mean 'euler'"),
    (dict(task="video"), ConfigError, "unknown task"),
    (dict(steps=0), ConfigError, "steps"),
])
def test_bad_requests(sd, bad, error, fragment):
    with pytest.raises(error, match=fragment):
        sd.generate(**{**FAST, **bad})


def test_cpu_rejects_cuda_only_settings():
    with pytest.raises(ConfigError, match="CUDA"):
        Engine.load("tiny-sd", device="cpu", optimize=["model_cpu_offload"])
    with pytest.raises(ConfigError, match="fp16 on cpu"):
        Engine.load("tiny-sd", device="cpu", precision="fp16")


@pytest.mark.parametrize("switches", [["attention_slicing"], ["vae_slicing", "vae_tiling"], ["channels_last"], ["fuse_qkv"], ["eager_attention"]])
def test_optimizations_keep_the_image(sd, switches):
    base = sd.generate(seed=3, **FAST).images[0]
    engine = Engine.load("tiny-sd", device="cpu", optimize=switches)
    other = engine.generate(seed=3, **FAST).images[0]
    assert np.abs(pixels(base) - pixels(other)).max() <= 3, switches


def test_fused_projections_hold_no_second_copy_of_the_weights():
    """diffusers keeps the unfused Q/K/V weights beside the fused layer (+1.25 GiB on SDXL); diffprof
    makes them views of it, so a fused model holds exactly the parameter bytes of an unfused one."""
    def unique_bytes(model: torch.nn.Module) -> int:
        storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
        return sum(storages.values())

    plain = Engine.load("tiny-sd", device="cpu")
    fused = Engine.load("tiny-sd", device="cpu", optimize=["fuse_qkv"])
    attn = [m for m in fused.base.unet.modules() if getattr(m, "fused_projections", False)]
    assert attn and all(
        m.to_q.weight.untyped_storage().data_ptr() == m.to_qkv.weight.untyped_storage().data_ptr()
        for m in attn if not m.is_cross_attention
    )
    assert unique_bytes(fused.base.unet) == unique_bytes(plain.base.unet)
    assert unique_bytes(fused.base.vae) == unique_bytes(plain.base.vae)


def test_a_fused_engine_saves_a_pipeline_plain_diffusers_loads(tmp_path):
    """engine.base.save_pretrained of a fused pipeline fails (safetensors refuses the shared Q/K/V
    views); Engine.save_pretrained writes the unfused weights alone, and the engine stays fused,
    sharing and drawing what it drew."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    kw = dict(steps=2, width=64, height=64, seed=3, prompt="a red circle")
    engine = Engine.load("tiny-sd", device="cpu", optimize=["fuse_qkv"])
    before = engine.generate(**kw).latents
    with pytest.raises(RuntimeError, match="share memory"):
        engine.base.save_pretrained(str(tmp_path / "direct"))
    engine.save_pretrained(tmp_path / "saved")
    keys = load_file(str(next((tmp_path / "saved" / "unet").glob("*.safetensors")))).keys()
    assert not any("to_qkv" in k or "to_kv" in k for k in keys) and any(k.endswith("to_q.weight") for k in keys)
    loaded = StableDiffusionPipeline.from_pretrained(str(tmp_path / "saved"))
    plain = Engine.load("tiny-sd", device="cpu")
    ours, theirs = loaded.unet.state_dict(), plain.base.unet.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)  # a plain model's weights, nothing fused
    attn = next(m for m in engine.base.unet.modules() if getattr(m, "fused_projections", False) and not m.is_cross_attention)
    assert attn.to_q.weight.untyped_storage().data_ptr() == attn.to_qkv.weight.untyped_storage().data_ptr()
    assert torch.equal(engine.generate(**kw).latents, before)


def test_bf16_runs_on_cpu():
    engine = Engine.load("tiny-sd", device="cpu", precision="bf16")
    assert engine.base.unet.dtype == torch.bfloat16
    assert engine.generate(**FAST).images[0].size == (64, 64)


def test_request_object_and_overrides(sd):
    req = GenerationRequest(prompt="a small green square at the top left on a white background", steps=2, width=64, height=64)
    r = sd.generate(req, seed=5)
    assert r.request.seed == 5 and r.request.prompt.startswith("a small green")


def test_load_info(sd):
    info = sd.load_info
    assert info.seconds > 0 and info.source.startswith("builtin") and info.family == "sd"


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sdxl"])
@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m", "unipc"])
def test_fast_loop_draws_what_the_pipeline_draws(model, scheduler):
    """diffprof's own loop (the graphable path) must compute exactly what diffusers' __call__ does."""
    plain = Engine.load(model, device="cpu")
    fast = Engine.load(model, device="cpu", optimize=["fast_loop"])
    kw = dict(scheduler=scheduler, steps=4, width=64, height=64, guidance=5.0, seed=11, prompt=["a red circle", "a blue square"], num_images=2)
    a, b = plain.generate(**kw), fast.generate(**kw)
    assert b.settings["fast_path"] == "eager_loop"
    assert torch.equal(a.latents, b.latents)
    assert all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(a.images, b.images))
    assert len(b.timing.steps_s) == 4 and b.timing.text_encode_s > 0 and b.timing.vae_decode_s > 0


def test_regional_compile_compiles_the_repeated_blocks_and_keeps_the_latents(tmp_path, monkeypatch, aot_eager_compile):
    """compile_regions compiles each transformer block and each ResNet/resampling block in place
    (the UNet object stays diffusers' own) and draws what the eager loop draws; the compile cache
    key tells it from a whole compile. (Traced by Dynamo and AOTAutograd, not built by inductor:
    the choice of blocks is diffprof's, the kernels are torch's.)"""
    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(tmp_path))
    kw = dict(steps=2, width=64, height=64, seed=1, prompt="a red circle")
    eager = Engine.load("tiny-sd", device="cpu", optimize=["fast_loop"]).generate(**kw)
    engine = Engine.load("tiny-sd", device="cpu", optimize=["fast_loop", "compile", "compile_regions"])
    result = engine.generate(**kw)
    unet = engine.base.unet
    blocks = [m for m in unet.modules() if type(m).__name__ in (*unet._repeated_blocks, *CONV_BLOCKS)]
    assert type(unet).__name__ == "UNet2DConditionModel"
    assert {type(b).__name__ for b in blocks} == {*unet._repeated_blocks, *CONV_BLOCKS}
    assert all(b._compiled_call_impl is not None for b in blocks)
    assert float((result.latents - eager.latents).norm() / eager.latents.norm()) < 1e-4
    assert "compile_regions" in engine.optimizations.label and engine.load_info.compile_cache.startswith("cold")


def test_fast_preset_needs_cuda():
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        Engine.load("tiny-sd", device="cpu", optimize=["fast"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels", [3, 1])
def test_to_pil_gives_the_bytes_diffusers_postprocess_gives(dtype, channels):
    """The fast path converts to 8 bits on the device; the pixels must equal diffusers' own."""
    from diffusers.image_processor import VaeImageProcessor

    from diffprof.engine.fast import to_pil

    g = torch.Generator().manual_seed(0)
    image = (torch.rand(2, channels, 16, 24, generator=g) * 2.4 - 1.2).to(dtype)  # includes values clamped at both ends
    image[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 1 / 255 - 1, 0.0], dtype=dtype)  # boundaries and a .5 rounding tie
    processor = VaeImageProcessor()
    ours, theirs = to_pil(processor, image), processor.postprocess(image, output_type="pil")
    assert [im.mode for im in ours] == [im.mode for im in theirs]
    assert all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(ours, theirs))


@pytest.mark.cuda
@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sdxl"])
@pytest.mark.parametrize("scheduler", sorted(GRAPH_SAFE))
def test_cuda_graph_replays_match_the_eager_loop_after_allocator_churn(model, scheduler):
    """A graphed loop reads tensors captured with it (the timesteps); replays after the scheduler
    re-creates its own and other tensors reuse freed memory must still draw the same latents."""
    kw = dict(scheduler=scheduler, steps=6, width=64, height=64, guidance=5.0, seed=3, prompt="a red circle")
    eager = Engine.load(model, device="cuda", precision="fp32", optimize=["fast_loop"]).generate(**kw)
    graphed = Engine.load(model, device="cuda", precision="fp32", optimize=["cuda_graph"])
    results = []
    for i in range(3):
        churn = [torch.full((n,), float(i), device="cuda") for n in (6, 12, 30, 64, 128)]  # small blocks, like time ids
        results.append(graphed.generate(**kw))
        del churn
    assert results[-1].settings["fast_path"] == "cuda_graph"
    for r in results:
        err = float((r.latents - eager.latents).norm() / eager.latents.norm())
        assert err < 1e-4, err


@pytest.mark.cuda
def test_fast_with_compile_regions_draws_what_eager_draws_on_cuda(tmp_path, monkeypatch):
    """`fast,compile_regions` on the GPU: every transformer and ResNet block compiled in place (none
    left eager by Dynamo's recompile limit), inside the graphed loop, latents within the 2e-2 that
    `fast` is held to."""
    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(tmp_path))
    kw = dict(scheduler="euler", steps=4, width=128, height=128, guidance=5.0, seed=2, prompt="a red circle")
    eager = Engine.load("tiny-sdxl", device="cuda", precision="fp16", optimize=["fast_loop"]).generate(**kw)
    engine = Engine.load("tiny-sdxl", device="cuda", precision="fp16", optimize=["fast", "compile_regions"])
    result = engine.generate(**kw)
    assert result.settings["fast_path"] == "cuda_graph"
    unet = engine.base.unet
    blocks = [m for m in unet.modules() if type(m).__name__ in (*unet._repeated_blocks, *CONV_BLOCKS)]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    err = float((result.latents.float() - eager.latents.float()).norm() / eager.latents.float().norm())
    assert err < 2e-2, err


def test_conv_block_compile_is_not_cut_short_by_dynamos_recompile_limit():
    """All instances of a block class share one Dynamo cache; past 8 shapes (SDXL's UNet has 12)
    Dynamo's default limit would leave the rest eager. With the limit hit made an error, nine
    blocks of nine shapes must all compile. (The limit is Dynamo's, so AOTAutograd's eager backend
    stands in for inductor, which would build nine C++ kernels.)"""
    from diffusers.models.resnet import ResnetBlock2D

    from diffprof.engine.apply import compile_conv_blocks

    model = torch.nn.ModuleList(ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=None, groups=1) for _ in range(9))
    assert compile_conv_blocks(model, {}, backend="aot_eager") == 9
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), torch.no_grad():
        for size, block in enumerate(model, start=2):
            x = torch.randn(1, 4, size, size)
            assert torch.allclose(block(x, None), block.forward(x, None), atol=1e-5)  # forward() is the eager path


@pytest.mark.cuda
def test_a_compiled_unet_runs_compiled_under_model_offload():
    """Compiled after the offload hooks went on, the UNet ran eagerly (the hook's disabled
    pre_forward broke the compiled call): no inductor kernel ran. Compiled first, it runs compiled,
    across pipeline calls that re-install the hooks, and draws what the eager pipeline draws."""
    kw = dict(scheduler="euler", steps=3, width=64, height=64, guidance=5.0, seed=4, prompt="a red circle")
    eager = Engine.load("tiny-sd", device="cuda", precision="fp16", optimize=["model_cpu_offload"]).generate(**kw)
    engine = Engine.load("tiny-sd", device="cuda", precision="fp16", optimize=["model_cpu_offload", "compile"])
    for _ in range(2):
        result = engine.generate(**kw)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        engine.generate(**kw)
    assert any(e.key.startswith("triton_") for e in prof.key_averages()), "the compiled UNet did not run"
    err = float((result.latents.float() - eager.latents.float()).norm() / eager.latents.float().norm())
    assert err < 2e-2, err


@pytest.mark.cuda
def test_a_closed_graphed_engine_leaves_no_device_memory_behind():
    """Each memory-suite cell loads its own engine: whatever a closed one leaves allocated inflates
    every later cell's peak (a fresh capture stream per engine left its cuBLAS workspace, ~33 MiB)."""
    kw = dict(scheduler="euler", steps=3, width=64, height=64, guidance=5.0, seed=4, prompt="a red circle")
    after = []
    for _ in range(3):
        engine = Engine.load("tiny-sd", device="cuda", precision="fp16", optimize=["cuda_graph"])
        assert engine.generate(**kw).settings["fast_path"] == "cuda_graph"
        engine.close()
        del engine
        after.append(torch.cuda.memory_allocated())
    assert after[2] <= after[0] + 2**20, after


@pytest.mark.cuda
@pytest.mark.parametrize("offload", ["model_cpu_offload", "sequential_cpu_offload"])
def test_fast_loop_runs_under_cpu_offload_and_draws_what_it_draws_resident(offload):
    """diffprof's loop under offload: the UNet sits on the CPU (or the meta device) between calls,
    so the loop must take the pipeline's execution device, and draw what it draws resident."""
    kw = dict(scheduler="euler", steps=3, width=64, height=64, guidance=5.0, seed=4, prompt="a red circle")
    resident = Engine.load("tiny-sd", device="cuda", precision="fp16", optimize=["fast_loop", "channels_last"]).generate(**kw)
    offloaded = Engine.load("tiny-sd", device="cuda", precision="fp16", optimize=["fast_loop", "channels_last", offload]).generate(**kw)
    assert offloaded.settings["fast_path"] == "eager_loop"
    err = float((offloaded.latents.float() - resident.latents.float()).norm() / resident.latents.float().norm())
    assert err < 1e-3, err


def test_device_names_resolve_in_one_place_and_teach(monkeypatch):
    from diffprof.engine.devices import clean, peak_memory, resolve_engine_device, synchronize

    assert resolve_engine_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'gpu0' is not a device") as err:
        resolve_engine_device("gpu0")
    assert "cuda:N" in err.value.hint
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine_device("auto") == resolve_engine_device(None) == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        resolve_engine_device("cuda")
    cpu = torch.device("cpu")
    synchronize(cpu)
    clean(cpu, reset_peaks=True)  # nothing to wait for or give back on the CPU, and no error
    assert peak_memory(cpu) == (None, None)


def test_an_engine_follows_its_profilers_clock_to_a_new_profiler():
    first, second = FakeClock(), FakeClock(start=5_000)
    engine = Engine.load("tiny-sd", device="cpu", profiler=Profiler("minimal", device="cpu", clock=first, measure_overhead=False))
    assert engine.clock is first
    engine.set_profiler(Profiler("minimal", device="cpu", clock=second, measure_overhead=False))
    assert engine.clock is second
    own = FakeClock()
    pinned = Engine.load("tiny-sd", device="cpu", clock=own, profiler=Profiler("minimal", device="cpu", measure_overhead=False))
    pinned.set_profiler(Profiler("minimal", device="cpu", measure_overhead=False))
    assert pinned.clock is own  # a clock given on purpose stays


def test_clean_freezes_the_imports_once_and_still_frees_later_cycles():
    """The first clean of a process freezes what is alive (the imports), so later full collections
    walk only newer objects; a cycle made after it, holding a tensor, is still freed by clean."""
    import gc
    import weakref

    from diffprof.engine import devices

    devices.clean(torch.device("cpu"))
    assert devices._imports_frozen and gc.get_freeze_count() > 0

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other, a.tensor = b, a, torch.zeros(4)
    gone = weakref.ref(a)
    del a, b
    devices.clean(torch.device("cpu"))
    assert gone() is None
