"""The switch registry on diffusion transformers (issue 21, points 5 and 6), without loading a model:
`fast` per denoiser and device, the family rules, the memory switches' labels, refusals and steps, and
the memory and ablation suites' default cells per model and device."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from diffprof.config import RunConfig
from diffprof.engine.apply import apply_optimizations
from diffprof.engine.switches import Optimizations, expand_fast, fast_help, fast_switches, for_model, label_switches
from diffprof.errors import ConfigError
from diffprof.suites import expand

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
CORE = ["channels_last", "fuse_qkv", "compile=unet+vae", "cuda_graph", "text_cache", "vae_bf16"]


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA machine as the expansion sees it: cuda_expected true, compute capability set by the test."""
    import diffprof.suites.base as base

    monkeypatch.setattr(base, "cuda_expected", lambda config: True)
    for module in ("diffprof.suites.memory", "diffprof.suites.ablation"):
        monkeypatch.setattr(f"{module}.cuda_expected", lambda config: True)
    capability = {"value": (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability["value"])
    return capability


# ------------------------------------------------------------------------------ fast per model
def test_fast_holds_fp8_and_regional_compile_on_transformers_only(gpu):
    assert expand_fast(["fast"]) == CORE and expand_fast(["fast"], "unet") == CORE
    assert expand_fast(["fast"], "transformer") == [*CORE, "fp8", "compile_regions"]
    assert [s.name for s in fast_switches("transformer")][-2:] == ["fp8", "compile_regions"]
    assert Optimizations.parse("fast", denoiser="transformer").label == "fast+fp8+compile_regions"
    assert Optimizations.parse(label_switches("fast+fp8+compile_regions")) == Optimizations.parse("fast", denoiser="transformer")
    assert "on transformers also fp8 where the device runs it" in fast_help()


def test_fast_leaves_fp8_out_where_the_gpu_cannot_run_it_and_says_so(gpu):
    opts, note = for_model("fast", "transformer", "flux", CUDA, "bf16")
    assert opts.fp8 and opts.compile_regions and note is None
    gpu["value"] = (8, 0)  # an A100: no float8 tensor cores
    opts, note = for_model("fast", "transformer", "flux", CUDA, "bf16")
    assert not opts.fp8 and opts.compile_regions and opts.cuda_graph
    assert note == "fast on a transformer holds fp8 where the device runs it; left out here (fp8 needs compute capability 8.9 or newer (Ada, Hopper))"
    with pytest.raises(ConfigError, match="fp8 needs compute capability 8.9"):  # asked for by name, it is refused
        for_model("fast,fp8", "transformer", "flux", CUDA, "bf16")


def test_a_weights_switch_the_user_names_replaces_fasts_fp8(gpu):
    for other in ("int8_weights", "layerwise_casting"):
        opts, note = for_model(f"fast,{other}", "transformer", "flux", CUDA, "bf16")
        assert not opts.fp8 and getattr(opts, other) and note is None
        assert opts.label == f"fast+{other}+compile_regions"


def test_torchao_missing_leaves_fp8_out_of_fast(gpu, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    opts, note = for_model("fast", "transformer", "sd3", CUDA, "bf16")
    assert not opts.fp8 and note.endswith("left out here (fp8 needs the torchao package, which is not installed)")


# ------------------------------------------------------------------------------ family rules
@pytest.mark.parametrize("switch, family, message, hint", [
    ("drop_t5", "flux", "drop_t5 cannot run on a flux model: FLUX's transformer reads T5's token embeddings as its whole text context (CLIP gives "
     "it only a pooled vector), so FluxPipeline cannot run without text_encoder_2",
     "keep T5 in host memory with t5_offload (streamed to the GPU only while it encodes), or cache its embeddings with text_cache"),
    ("drop_t5", "pixart", "drop_t5 cannot run on a pixart model: pixart pipelines cannot run without their text encoders",
     "keep T5 in host memory with t5_offload (streamed to the GPU only while it encodes), or cache its embeddings with text_cache"),
    ("t5_offload", "sana", "t5_offload cannot run on a sana model: sana pipelines have no T5 text encoder diffprof knows of", "drop t5_offload for this model"),
    ("t5_offload", "generic", "t5_offload cannot run on a generic model: generic pipelines have no T5 text encoder diffprof knows of",
     "drop t5_offload for this model"),
])
def test_switches_a_family_cannot_run_are_refused_with_the_reason(switch, family, message, hint):
    with pytest.raises(ConfigError) as err:
        Optimizations.parse(switch).check_model("transformer", family)
    assert (err.value.message, err.value.hint) == (message, hint)


@pytest.mark.parametrize("switch, families", [("drop_t5", ["sd3"]), ("t5_offload", ["sd3", "flux", "pixart"])])
def test_the_families_with_a_t5_take_the_t5_switches(switch, families):
    for family in families:
        Optimizations.parse(switch).check_model("transformer", family)
    Optimizations.parse(switch).check_model(None, None)  # not known yet (a Hub id before loading): checked after loading


def test_flux_refuses_drop_t5_before_loading():
    from diffprof.engine import Engine

    with pytest.raises(ConfigError, match="drop_t5 cannot run on a flux model"):
        Engine.load("tiny-flux", device="cpu", optimize=["drop_t5"])


# ------------------------------------------------------------------------------ labels, levels
@pytest.mark.parametrize("typed, label, level", [("group_offload", "group_offload", "block"), ("group_offload=block", "group_offload", "block"),
                                                 ("group_offload=leaf", "group_offload=leaf", "leaf")])
def test_group_offload_levels_parse_and_label(typed, label, level):
    opts = Optimizations.parse(typed)
    assert (opts.offload, opts.group_offload, opts.label) == ("group", level, label)
    assert opts.places and Optimizations.parse(label_switches(f"vae_tiling+{label}")).group_offload == level


def test_an_unknown_group_offload_level_is_refused():
    with pytest.raises(ConfigError, match="unknown group offload level 'layer'") as err:
        Optimizations.parse("group_offload=layer")
    assert "block" in err.value.hint and "leaf" in err.value.hint


# ------------------------------------------------------------------------------ steps on a pipeline
class Pipe:
    """A pipeline of recording components (the offload steps need CUDA to run for real)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.components = {name: self._module(name) for name in ("transformer", "vae", "text_encoder", "text_encoder_2")}
        self.components["tokenizer"] = object()
        for name, module in self.components.items():
            setattr(self, name, module)

    def to(self, device):
        self.calls.append(("pipe.to", {}))
        return self

    def _module(self, name: str) -> torch.nn.Module:
        calls = self.calls
        module = torch.nn.Linear(2, 2)
        if name in ("transformer", "vae"):
            module.enable_group_offload = lambda **kw: calls.append((f"{name}.enable_group_offload", kw))
        module.to = lambda *a, **kw: calls.append((f"{name}.to", {})) or module
        return module


@pytest.mark.parametrize("level, denoiser_call", [
    ("group_offload", {"offload_type": "block_level", "num_blocks_per_group": 1}),
    ("group_offload=leaf", {"offload_type": "leaf_level"}),
])
def test_group_offload_streams_every_component_through_diffusers(level, denoiser_call, monkeypatch):
    import diffusers.hooks

    pipe = Pipe()
    monkeypatch.setattr(diffusers.hooks, "apply_group_offloading", lambda module, **kw: pipe.calls.append((f"apply {id(module)}", kw)))
    apply_optimizations(pipe, Optimizations.parse(level), CPU)
    streams = {"onload_device": CPU, "offload_device": CPU, "use_stream": True}
    assert pipe.calls == [
        ("transformer.enable_group_offload", {**denoiser_call, **streams}),
        ("vae.enable_group_offload", {**denoiser_call, **streams}),
        (f"apply {id(pipe.text_encoder)}", {"offload_type": "leaf_level", **streams}),
        (f"apply {id(pipe.text_encoder_2)}", {"offload_type": "leaf_level", **streams}),
    ]  # nothing is placed: the hooks move each group when it runs


def test_t5_offload_streams_the_t5_alone_and_places_the_rest(monkeypatch):
    import diffusers.hooks

    pipe = Pipe()
    pipe.components["text_encoder_2"] = pipe.text_encoder_2 = type("T5EncoderModel", (torch.nn.Linear,), {})(2, 2)
    monkeypatch.setattr(diffusers.hooks, "apply_group_offloading", lambda module, **kw: pipe.calls.append((type(module).__name__, kw)))
    apply_optimizations(pipe, Optimizations.parse("t5_offload"), CPU)
    assert pipe.calls == [("transformer.to", {}), ("vae.to", {}), ("text_encoder.to", {}),
                          ("T5EncoderModel", {"onload_device": CPU, "offload_device": CPU, "offload_type": "leaf_level", "use_stream": True})]


def test_t5_offload_on_a_pipeline_without_a_t5_says_so():
    with pytest.raises(ConfigError, match="Pipe has no T5 text encoder to offload or drop"):
        apply_optimizations(Pipe(), Optimizations.parse("t5_offload"), CPU)


# ------------------------------------------------------------------------------ suite defaults
def memory_cells(model: str, **kw) -> list[str]:
    return [c.labels["optimization"] for c in expand(RunConfig.from_mapping({"suites": ["memory"], "model": model, **kw}))]


def test_the_memory_suites_defaults_on_a_gpu_hold_the_big_model_switches(gpu):
    flux = memory_cells("flux-dev", precision="bf16")
    assert flux == ["none", "vae_slicing", "vae_tiling", "model_cpu_offload", "sequential_cpu_offload", "group_offload", "group_offload=leaf",
                    "t5_offload", "layerwise_casting", "int8_weights", "fp8"]
    assert memory_cells("sd35-large", precision="bf16") == [*flux[:8], "drop_t5", *flux[8:]]
    assert memory_cells("sana", precision="bf16") == [o for o in flux if o != "t5_offload"]  # Gemma, no T5
    assert memory_cells("sdxl") == ["none", "attention_slicing", "vae_slicing", "vae_tiling", "model_cpu_offload", "sequential_cpu_offload"]
    gpu["value"] = (8, 0)
    assert "fp8" not in memory_cells("flux-dev", precision="bf16")


def test_named_memory_options_run_as_given_even_where_they_cannot_run():
    assert memory_cells("tiny-flux", device="cpu", memory_optimizations=["none", "drop_t5", "group_offload"]) == ["none", "drop_t5", "group_offload"]


def test_the_ablation_suite_takes_out_each_element_of_the_models_fast(gpu):
    variants = [c.labels["variant"] for c in expand(RunConfig.from_mapping({"suites": ["ablation"], "model": "flux-dev", "precision": "bf16"}))]
    assert variants == ["none", "fast", *(f"fast - {t}" for t in [*CORE, "fp8", "compile_regions"])]
    cells = {c.labels["variant"]: Optimizations.parse(c.config.optimize) for c in expand(RunConfig.from_mapping({"suites": ["ablation"], "model": "flux-dev"}))}
    assert cells["fast"].fp8 and not cells["fast - fp8"].fp8 and cells["fast - fp8"].compile_regions
    assert cells["fast - text_cache"].cuda_graph and not cells["fast - text_cache"].text_cache
    sd = [c.labels["variant"] for c in expand(RunConfig.from_mapping({"suites": ["ablation"], "model": "sdxl"}))]
    assert sd == ["none", "fast", *(f"fast - {t}" for t in CORE)]
    gpu["value"] = (8, 0)
    assert "fast - fp8" not in [c.labels["variant"] for c in expand(RunConfig.from_mapping({"suites": ["ablation"], "model": "flux-dev"}))]


def test_fp8_quantizes_a_transformers_large_linear_layers(monkeypatch):
    """fp8 reaches the denoiser whichever it is: a FLUX transformer's linear layers, per-row scales at bf16
    (the kernels need Ada/Hopper, so torchao's quantize_ is recorded here, not run)."""
    torchao_quantization = pytest.importorskip("torchao.quantization")
    calls = []
    monkeypatch.setattr(torchao_quantization, "quantize_", lambda module, config, filter_fn: calls.append((module, config, filter_fn)))
    pipe = Pipe()
    pipe.transformer = torch.nn.Sequential(torch.nn.Linear(3072, 3072), torch.nn.Linear(3072, 64)).to(torch.bfloat16)
    pipe.transformer.dtype = torch.bfloat16
    apply_optimizations(pipe, Optimizations.parse("fp8"), CPU)
    (module, config, filter_fn), = calls
    granularity = config.granularity if isinstance(config.granularity, list) else [config.granularity]
    assert module is pipe.transformer and {type(g).__name__ for g in granularity} == {"PerRow"} and config.set_inductor_config is False
    assert [filter_fn(m, n) for n, m in module.named_children()] == [True, False]
