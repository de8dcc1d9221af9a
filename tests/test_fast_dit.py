"""`fast` and the memory switches on diffusion transformers, on a CPU with the tiny presets (issue 21,
points 5 and 6): diffprof's own flow-matching loop draws what the pipelines draw, the text-embedding
cache gives the pipelines' own results back and re-encodes whatever changes what it encodes, and
each memory switch does what it says to the weights. The GPU-only paths (CUDA graphs of flow loops,
fp8, the offloads) are the `cuda`-marked tests at the end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffprof.engine import Engine
from diffprof.engine.text_cache import CALL_ARGUMENTS, TextCache

KW = dict(steps=3, width=64, height=64, guidance=4.0, seed=3)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def same_images(a, b) -> bool:
    return len(a.images) == len(b.images) and all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(a.images, b.images))


@pytest.fixture(scope="module")
def plain():
    engines: dict[tuple[str, str], Engine] = {}

    def get(model: str, precision: str = "fp32") -> Engine:
        if (model, precision) not in engines:
            engines[(model, precision)] = Engine.load(model, device="cpu", precision=precision)
        return engines[(model, precision)]

    yield get
    for e in engines.values():
        e.close()


# ------------------------------------------------------------------------------ the flow loop
@pytest.mark.parametrize("model, scheduler", [
    ("tiny-flux", "default"), ("tiny-flux", "flow_euler_karras"),
    ("tiny-sd3", "default"), ("tiny-sd3", "flow_dpmpp_2m"), ("tiny-sd3", "flow_heun"), ("tiny-sd3", "flow_unipc"),
])
def test_the_flow_loop_draws_what_the_pipeline_draws(plain, model, scheduler):
    """diffprof's FLUX / SD3 loop (the graphable path) computes exactly what diffusers' __call__ does,
    prompts batched and several images per prompt, CFG (SD3) and distilled guidance (FLUX)."""
    fast = Engine.load(model, device="cpu", precision="fp32", optimize=["fast_loop"])
    kw = dict(KW, scheduler=scheduler, prompt=["a red circle", "a blue square"], num_images=2)
    a, b = plain(model).generate(**kw), fast.generate(**kw)
    assert b.settings["fast_path"] == "eager_loop" and "fast_path_note" not in b.settings
    assert torch.equal(a.latents, b.latents) and same_images(a, b)
    t = b.timing
    assert len(t.steps_s) == len(fast.base.scheduler.timesteps) and t.text_encode_s > 0 and t.vae_decode_s > 0 and t.denoiser_calls == len(t.unet_s)
    fast.close()


def test_the_flow_loop_keeps_the_vae_precision_it_is_asked_for(plain):
    fast = Engine.load("tiny-flux", device="cpu", precision="fp32", optimize=["fast_loop", "vae_bf16"])
    result = fast.generate(**KW)
    assert fast.base.vae.dtype == torch.bfloat16 and result.images[0].size == (64, 64)
    assert torch.equal(result.latents, plain("tiny-flux").generate(**KW).latents)  # the loop is untouched


def test_graph_capture_on_a_cpu_is_never_tried(plain):
    """The CUDA graph needs CUDA (refused up front); the eager loop is what a CPU runs, with no note."""
    from diffprof.engine.fast import GRAPH_SAFE

    assert {"flow_euler", "flow_euler_karras", "flow_dpmpp_2m"} <= GRAPH_SAFE and "flow_heun" not in GRAPH_SAFE and "flow_unipc" not in GRAPH_SAFE


# ------------------------------------------------------------------------------ text cache
FAMILY_MODELS = ["tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-pixart", "tiny-sana"]


@pytest.mark.parametrize("model", FAMILY_MODELS)
@pytest.mark.parametrize("negative", [None, "blurry"])
def test_cached_embeddings_give_the_pipelines_own_result(plain, model, negative):
    """Every family: the cached embeddings passed back through __call__ (its own loop) draw the same
    bytes as the pipeline encoding the prompt itself; the second call encodes nothing."""
    engine = Engine.load(model, device="cpu", precision="fp32", optimize=["text_cache"])
    kw = dict(KW, steps=2, prompt=["a red circle", "a blue square"], num_images=2, negative_prompt=negative)
    reference = plain(model).generate(**kw)
    first, second = engine.generate(**kw), engine.generate(**kw)
    assert (first.settings["text_embeddings"], second.settings["text_embeddings"]) == ("encoded", "cached")
    assert first.timing.text_encode_s > 0 and second.timing.text_encode_s == 0 and not second.timing.text_encode_by
    for result in (first, second):
        assert torch.equal(result.latents, reference.latents) and same_images(result, reference)
    engine.close()


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-flux", "tiny-sd3"])
def test_the_fast_loop_reads_the_cache_too(plain, model):
    engine = Engine.load(model, device="cpu", precision="fp32", optimize=["fast_loop", "text_cache"])
    kw = dict(KW, prompt="a red circle")
    results = [engine.generate(**kw) for _ in range(2)]
    assert [r.settings["text_embeddings"] for r in results] == ["encoded", "cached"]
    assert all(torch.equal(r.latents, plain(model).generate(**kw).latents) for r in results)


@pytest.fixture(scope="module")
def cached():
    engine = Engine.load("tiny-sd", device="cpu", optimize=["text_cache"])
    yield engine
    engine.close()


@pytest.mark.parametrize("change", [
    {"prompt": "a blue square"},  # another prompt
    {"negative_prompt": "blurry"},  # another negative prompt
    {"guidance": 1.0},  # no CFG: no negative half
    {"num_images": 2},  # images per prompt
    {"prompt": ["a red circle", "a red circle"]},  # a batch of the same prompt
])
def test_whatever_changes_the_encoding_is_encoded_again(cached, change):
    base = dict(KW, steps=1, prompt="a red circle")
    cached.generate(**base)
    assert cached.generate(**base).settings["text_embeddings"] == "cached"
    changed = cached.generate(**{**base, **change})
    assert changed.settings["text_embeddings"] == "encoded" and changed.timing.text_encode_s > 0
    assert cached.generate(**{**base, **change}).settings["text_embeddings"] == "cached"
    assert cached.generate(**base).settings["text_embeddings"] == "cached"  # the first is still kept


def test_what_does_not_change_the_encoding_reuses_it(cached):
    base = dict(KW, steps=1, prompt="a red circle")
    cached.generate(**base)
    for change in ({"seed": 9}, {"steps": 2}, {"scheduler": "euler"}, {"guidance": 7.0}, {"width": 32, "height": 32}):
        assert cached.generate(**{**base, **change}).settings["text_embeddings"] == "cached", change


def test_new_weights_in_a_text_encoder_invalidate_what_it_encoded(cached):
    base = dict(KW, steps=1, prompt="a weight check")
    before = cached.generate(**base)
    weight = cached.base.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight.mul_(1.5)  # an in-place load of new weights
    after = cached.generate(**base)
    assert after.settings["text_embeddings"] == "encoded" and not torch.equal(after.latents, before.latents)
    with torch.no_grad():
        weight.div_(1.5)


def test_the_cache_keeps_the_most_recent_and_close_empties_it():
    cache = TextCache(size=2)

    class Pipe:
        components: dict = {}
        calls = 0

        def encode_prompt(self, prompt, device=None, num_images_per_prompt=1):
            Pipe.calls += 1
            return (prompt,)

    pipe = Pipe()
    for prompt in ("a", "b", "a", "c", "b"):
        cache.encode(pipe, {"prompt": prompt})
    assert Pipe.calls == 4 and len(cache) == 2 and (cache.hits, cache.misses) == (1, 4)  # "a" hit; "b" was evicted by "c"
    cache.clear()
    assert len(cache) == 0


def test_img2img_takes_cached_embeddings_too(plain):
    engine = Engine.load("tiny-flux", device="cpu", precision="fp32", optimize=["text_cache"])
    kw = dict(KW, task="img2img", strength=0.8)
    reference = plain("tiny-flux").generate(**kw)
    results = [engine.generate(**kw) for _ in range(2)]
    assert results[1].settings["text_embeddings"] == "cached" and all(torch.equal(r.latents, reference.latents) for r in results)


def test_a_pipeline_no_family_covers_encodes_every_call_and_says_so(presetless_folders):
    folder = str(presetless_folders["QwenImagePipeline"])
    engine = Engine.load(folder, device="cpu", optimize=["text_cache"])
    result = engine.generate(steps=1, width=32, height=32)
    assert result.settings["text_embeddings"] == "encoded (text_cache does not know what QwenImagePipeline.encode_prompt returns)"
    assert "generic" not in CALL_ARGUMENTS and result.timing.text_encode_s > 0


# ------------------------------------------------------------------------------ memory switches
def denoiser_linears(engine: Engine) -> list[torch.nn.Linear]:
    return [m for m in engine.base.transformer.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("model", ["tiny-flux", "tiny-sd3"])
def test_fused_qkv_on_a_transformer_is_exact_and_keeps_one_copy(plain, model, tmp_path):
    """Both streams' projections fused (image to_qkv, text to_added_qkv), the unfused weights views of
    the fused ones, and the latents unchanged (SD 3.5's q/k norms kept: diffprof's FusedJointAttention)."""
    engine = Engine.load(model, device="cpu", precision="fp32", optimize=["fuse_qkv"])
    fused = [m for m in engine.base.transformer.modules() if getattr(m, "fused_projections", False)]
    assert fused and all(m.to_q.weight.data_ptr() == m.to_qkv.weight.data_ptr() for m in fused)
    joint = [m for m in fused if getattr(m, "to_added_qkv", None) is not None]
    assert joint and all(m.add_q_proj.weight.data_ptr() == m.to_added_qkv.weight.data_ptr() for m in joint)
    if model == "tiny-sd3":
        assert {type(m.processor).__name__ for m in fused} == {"FusedJointAttention"}
    a = engine.generate(**KW)
    b = plain(model).generate(**KW)
    assert float((a.latents - b.latents).norm() / b.latents.norm()) < 1e-5
    engine.save_pretrained(tmp_path / "fused")  # shared weights saved apart, the fused layers left out
    assert Engine.load(str(tmp_path / "fused"), device="cpu", precision="fp32").generate(**KW).latents.allclose(b.latents, atol=1e-5)


@pytest.mark.parametrize("switches", [["layerwise_casting"], ["fuse_qkv", "layerwise_casting"]])
def test_layerwise_casting_stores_the_transformer_in_float8(plain, switches):
    engine = Engine.load("tiny-flux", device="cpu", precision="bf16", optimize=switches)
    weights = {m.weight.dtype for m in denoiser_linears(engine)}
    assert torch.float8_e4m3fn in weights
    if "fuse_qkv" in switches:  # cast, then the unfused projections views of the cast fused ones again
        fused = [m for m in engine.base.transformer.modules() if getattr(m, "fused_projections", False)]
        assert all(m.to_q.weight.data_ptr() == m.to_qkv.weight.data_ptr() and m.to_qkv.weight.dtype == torch.float8_e4m3fn for m in fused)
    a, b = engine.generate(**KW), plain("tiny-flux", "bf16").generate(**KW)
    err = float((a.latents.float() - b.latents.float()).norm() / b.latents.float().norm())
    assert 0 < err < 0.1


def test_int8_weights_quantize_the_transformers_linear_layers(plain):
    pytest.importorskip("torchao")
    engine = Engine.load("tiny-sd3", device="cpu", precision="bf16", optimize=["int8_weights"])
    assert all("Int8" in type(m.weight).__name__ for m in denoiser_linears(engine))
    a, b = engine.generate(**KW), plain("tiny-sd3", "bf16").generate(**KW)
    err = float((a.latents.float() - b.latents.float()).norm() / b.latents.float().norm())
    assert 0 < err < 0.1


def test_sd3_without_t5_runs_on_clip_alone(plain):
    """drop_t5: T5 and its tokenizer gone before anything is placed, zeros of T5's length in their place
    (the transformer's work unchanged, T5's FLOPs gone), the stand-in note gone with the tokenizer."""
    from diffprof.flops import pipeline_flops

    engine = Engine.load("tiny-sd3", device="cpu", optimize=["drop_t5"])
    assert engine.base.text_encoder_3 is None and engine.base.tokenizer_3 is None
    assert engine.anatomy.text_encoders == ("text_encoder", "text_encoder_2") and engine.anatomy.stand_in_note is None
    result = engine.generate(**KW)
    assert set(result.timing.text_encode_by) == {"text_encoder", "text_encoder_2"} and "stand_in_note" not in result.settings
    (args, kwargs), *_ = result.inputs.signatures["transformer"]
    full = plain("tiny-sd3")
    (_, full_kwargs), *_ = full.generate(**KW).inputs.signatures["transformer"]
    assert kwargs["encoder_hidden_states"].shape == full_kwargs["encoder_hidden_states"].shape
    flops = lambda e: pipeline_flops(e.base, width=64, height=64, batch=1, guidance=True, sequence_lengths=e.preset.sequence_lengths)  # noqa: E731
    assert flops(engine).unet_per_eval == flops(full).unet_per_eval and flops(engine).text_encoder < flops(full).text_encoder
    assert set(flops(engine).text_by) == {"text_encoder", "text_encoder_2"}


def test_compile_on_a_transformer_compiles_the_transformer(plain, aot_eager_compile, tmp_path, monkeypatch):
    """`compile` (compile=unet: the denoiser) wraps a FLUX transformer; compile_regions compiles its
    repeated blocks in place, and SD3's block list (diffusers names no repeated blocks for it)."""
    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(tmp_path))
    whole = Engine.load("tiny-flux", device="cpu", precision="fp32", optimize=["compile"])
    assert type(whole.base.transformer).__name__ == "OptimizedModule"
    assert torch.allclose(whole.generate(**KW).latents, plain("tiny-flux").generate(**KW).latents, atol=1e-4)
    regions = Engine.load("tiny-sd3", device="cpu", precision="fp32", optimize=["compile", "compile_regions"])
    blocks = list(regions.base.transformer.transformer_blocks)
    assert type(regions.base.transformer).__name__ == "SD3Transformer2DModel" and all(b._compiled_call_impl is not None for b in blocks)
    assert torch.allclose(regions.generate(**KW).latents, plain("tiny-sd3").generate(**KW).latents, atol=1e-4)


# ------------------------------------------------------------------------------ the suites measure it
def run(tmp_path, **kw):
    from io import StringIO

    from rich.console import Console

    from diffprof.config import RunConfig
    from diffprof.store import Store
    from diffprof.suites.runner import Runner

    config = RunConfig.from_mapping({"steps": 2, "width": 64, "height": 64, "repeats": 1, "warmup": 0, "threads": 1, "report": None,
                                     "device": "cpu", "isolate": False, "db": str(tmp_path / "s.db"), **kw})
    with Store(config.db) as store:
        summary = Runner(config, store, console=Console(file=StringIO()), progress=False).run()
        return store.get_run(summary.run_id)


@pytest.mark.parametrize("model, options, lossy", [
    ("tiny-flux", ["none", "vae_slicing", "layerwise_casting", "int8_weights"], {"layerwise_casting", "int8_weights"}),
    ("tiny-sd3", ["none", "drop_t5", "layerwise_casting"], {"drop_t5", "layerwise_casting"}),
])
def test_the_memory_suite_scores_each_options_cost_against_the_plain_pipeline(tmp_path, model, options, lossy):
    result = run(tmp_path, model=model, precision="bf16", suites=["memory"], memory_optimizations=options)
    assert [c.labels["optimization"] for c in result.cells] == options and all(c.ok for c in result.cells), [c.error for c in result.cells]
    for cell in result.cells:
        m = cell.metrics
        assert m["s_per_image"] > 0 and m["host_peak_rss_bytes"] > 0
        assert cell.settings["quality"]["fidelity"].startswith("against the plain pipeline (no switches), bf16, same call and seed 0")
        if cell.labels["optimization"] in lossy:
            assert 0 < m["fidelity_latent_error"] < 0.5 and m["fidelity_psnr_db"] < float("inf")
        else:
            assert m["fidelity_latent_error"] == 0 and m["fidelity_psnr_db"] == float("inf")


def test_a_memory_cell_whose_reference_fails_keeps_its_measurement(tmp_path, monkeypatch):
    import diffprof.quality.fidelity as fidelity

    def broken(*a, **k):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(fidelity, "solve_plain", broken)
    result = run(tmp_path, model="tiny-flux", suites=["memory"], memory_optimizations=["vae_tiling"])
    cell, = result.cells
    assert cell.ok and cell.metrics["s_per_image"] > 0 and "fidelity_latent_error" not in cell.metrics
    assert cell.settings["quality"]["fidelity"] == "not scored: the plain reference failed (RuntimeError: CUDA out of memory)"


# ------------------------------------------------------------------------------ on a GPU
@pytest.mark.cuda
@pytest.mark.parametrize("model, scheduler", [("tiny-flux", "default"), ("tiny-flux", "flow_euler_karras"), ("tiny-sd3", "default"),
                                              ("tiny-sd3", "flow_dpmpp_2m"), ("tiny-sd3", "flow_deis"), ("tiny-sd3", "flow_dpm_single")])
def test_the_flow_loop_as_one_cuda_graph_matches_its_eager_loop(model, scheduler):
    kw = dict(KW, scheduler=scheduler, steps=6, prompt="a red circle")
    eager = Engine.load(model, device="cuda", precision="fp32", optimize=["fast_loop"]).generate(**kw)
    graphed = Engine.load(model, device="cuda", precision="fp32", optimize=["cuda_graph", "text_cache"])
    results = [graphed.generate(**kw) for _ in range(3)]
    assert all(r.settings["fast_path"] == "cuda_graph" for r in results), results[-1].settings.get("fast_path_note")
    for r in results:
        assert float((r.latents - eager.latents).norm() / eager.latents.norm()) < 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("model", ["tiny-flux", "tiny-sd3"])
def test_fast_on_a_transformer_graphs_compiles_and_quantizes_on_a_gpu(model, tmp_path, monkeypatch):
    """`fast` on an fp8 GPU: fp8 and regional compile in, the loop one CUDA graph, the text cache hit on
    repeats; without fp8 (its lossless part) the latents stay within 2e-2 of eager."""
    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(tmp_path))
    kw = dict(KW, steps=4, prompt="a red circle")
    eager = Engine.load(model, device="cuda", precision="bf16").generate(**kw)
    fast = Engine.load(model, device="cuda", precision="bf16", optimize=["fast"])
    major, minor = torch.cuda.get_device_capability()
    assert fast.optimizations.compile_regions and fast.optimizations.fp8 == ((major, minor) >= (8, 9))
    results = [fast.generate(**kw) for _ in range(2)]
    assert results[-1].settings["fast_path"] == "cuda_graph" and results[-1].settings["text_embeddings"] == "cached"
    from diffprof.engine.switches import expand_fast, runs_on

    lossless = [t for t in expand_fast(["fast"], "transformer", runs_on(torch.device("cuda"), "bf16")) if t != "fp8"]
    out = Engine.load(model, device="cuda", precision="bf16", optimize=lossless).generate(**kw)
    assert float((out.latents.float() - eager.latents.float()).norm() / eager.latents.float().norm()) < 2e-2


@pytest.mark.cuda
@pytest.mark.parametrize("switches", [["model_cpu_offload"], ["sequential_cpu_offload"], ["group_offload"], ["group_offload=leaf"], ["t5_offload"],
                                      ["t5_offload", "fast"], ["layerwise_casting"], ["fp8"]])
def test_each_memory_switch_runs_flux_on_a_gpu(switches):
    """Every memory switch on FLUX's pipeline on a GPU (synthetic weights drawn on the GPU, so the offloaded
    engines run the same weights): the lossless ones draw what the resident engine draws."""
    if "fp8" in switches and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs compute capability 8.9")
    kw = dict(KW, prompt="a red circle")
    resident = Engine.load("tiny-flux", device="cuda", precision="bf16").generate(**kw)
    engine = Engine.load("tiny-flux", device="cuda", precision="bf16", optimize=switches)
    result = engine.generate(**kw)
    err = float((result.latents.float() - resident.latents.float()).norm() / resident.latents.float().norm())
    lossy = {"layerwise_casting", "fp8", "fast"} & set(switches)
    assert err < (0.1 if lossy else 1e-3), err
    assert engine.base._execution_device.type == "cuda"


@pytest.mark.cuda
@pytest.mark.slow  # nine of its ten cells compile
def test_the_ablation_suite_on_a_transformer_on_a_gpu(tmp_path):
    result = run(tmp_path, model="tiny-flux", device="cuda", precision="bf16", suites=["ablation"], quality=["auto"])
    variants = [c.labels["variant"] for c in result.cells]
    assert "fast - compile_regions" in variants and all(c.ok for c in result.cells), [c.error for c in result.cells]
    by = {c.labels["variant"]: c for c in result.cells}
    assert by["none"].metrics["fidelity_latent_error"] == 0 and by["fast"].metrics["fidelity_latent_error"] > 0
