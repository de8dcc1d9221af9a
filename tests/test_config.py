"""One config schema: defaults, SEOConfig aliases, validation errors that teach, file formats."""

from __future__ import annotations

import json

import pytest
import torch

from diffprof.config import RunConfig, parse_resolution
from diffprof.engine.precision import resolve_precision
from diffprof.engine.switches import Optimizations
from diffprof.errors import ConfigError
from diffprof.suites.checks import check_config

SEO = {
    "use_diffusion": True,
    "diffusion_model_name": "tiny-sd",
    "diffusion_steps": 4,
    "diffusion_guidance_scale": 5.0,
    "diffusion_height": 64,
    "diffusion_width": 48,
    "enable_code_profiling": False,
    "profile_diffusion_generation": True,
    "profile_scheduler_performance": True,
    "profile_resolution_scaling": True,
    "enable_memory_efficient_attention": True,
    "enable_sequential_cpu_offload": False,
    "use_diffusion_mixed_precision": False,
    "profile_pipeline_variants": False,
    "benchmark_schedulers": ["euler", "ddim"],
    "profile_advanced_features": False,
}


def test_defaults_validate():
    c = RunConfig()
    c.validate()
    assert c.model == "shapes-sd" and c.repeats == 3 and c.suites == ["quick"]


def test_seo_fields_map_to_what_they_say():
    c = RunConfig.from_mapping(SEO)
    assert (c.model, c.steps, c.guidance, c.height, c.width) == ("tiny-sd", 4, 5.0, 64, 48)
    assert c.suites == ["generation", "schedulers", "resolutions"]
    assert c.schedulers == ["euler", "ddim"]
    assert "sequential_cpu_offload" not in c.optimize
    assert c.precision == "fp32" and c.profile_level == "standard"


def test_seo_flags_switch_things_on():
    c = RunConfig.from_mapping(
        {"enable_sequential_cpu_offload": True, "use_diffusion_mixed_precision": True, "enable_code_profiling": True, "profile_advanced_features": True, "profile_pipeline_variants": True}
    )
    assert "sequential_cpu_offload" in c.optimize
    # the seed's basic profiling (2-5% overhead) is level standard; detailed is asked for by name
    assert c.precision == "half" and c.profile_level == "standard"
    assert c.suites == ["pipelines", "memory", "precision"]  # canonical order, not key order
    c = RunConfig.from_mapping({"enable_memory_efficient_attention": False})
    assert "eager_attention" in c.optimize


def test_explicit_suites_win_over_flags():
    c = RunConfig.from_mapping({"suites": ["steps"], "profile_scheduler_performance": True})
    assert c.suites == ["steps"]


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping({"diffusion_step": 20})
    assert "diffusion_step" in str(info.value) and "diffusion_steps" in str(info.value)
    with pytest.raises(ConfigError, match="'steps'"):
        RunConfig.from_mapping({"stpes": 20})


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"width": 500}, "multiple of 8"),
        ({"steps": 0}, "steps"),
        ({"precision": "fp8"}, "precision"),
        ({"task": "txt2vid"}, "txt2img"),
        ({"strength": 1.5}, "strength"),
        ({"resolutions": ["512by512"]}, "WIDTHxHEIGHT"),
        ({"profile_level": "off"}, "nothing to report"),
        ({"profile_level": "verbose"}, "unknown profiler level 'verbose'"),
        ({"device": "tpu"}, "device"),
        ({"quality": ["adherence", "none"]}, "cannot be combined"),
        ({"quality": ["clip"]}, "needs a CLIP model"),
        ({"workers": 2}, "needs a parallel executor"),
    ],
)
def test_bad_values_get_clear_errors(bad, fragment):
    """The schema's own checks: from_mapping refuses these by itself."""
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping(bad)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"scheduler": "eulr"}, "euler"),
        ({"schedulers": ["ddim", "eulr"]}, "euler"),
        ({"reference_scheduler": "euler_a"}, "stochastic"),
        ({"suites": ["schedulrs"]}, "schedulers"),
        ({"executor": "slurm"}, "unknown executor"),
        ({"optimize": ["vae_slice"]}, "vae_slicing"),
        ({"optimize": ["model_cpu_offload", "sequential_cpu_offload"]}, "exclude"),
        ({"memory_optimizations": ["vae_slicing+vae_tilling"]}, "vae_tiling"),
    ],
)
def test_bad_registry_names_get_clear_errors(bad, fragment):
    """Names that belong to registries above the schema: check_config (which every entry point calls)
    refuses them; the schema alone cannot know them and lets them through."""
    config = RunConfig.from_mapping(bad)
    with pytest.raises(ConfigError) as info:
        check_config(config)
    assert fragment in str(info.value)


def _wrong_value(spec):
    """A value of the wrong type for ``spec``'s field (or its entries)."""
    wrong = {bool: "maybe", int: 2.5, float: float("nan"), str: 5}[spec.type]
    return [wrong] if spec.is_list else wrong


@pytest.mark.parametrize("name", RunConfig.field_names())
def test_every_field_is_checked_by_its_declared_type(name):
    """Python, YAML, TOML, JSON and flags all arrive here: a value of the wrong type is refused for
    every field, with the field (or what one entry is) named."""
    spec = RunConfig.spec(name)
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping({name: _wrong_value(spec)})
    assert spec.what in info.value.message
    if spec.is_list:
        with pytest.raises(ConfigError, match="must be a list"):
            RunConfig.from_mapping({name: 5})


def test_numbers_keep_their_ranges():
    for data, words in (({"warmup": -1}, "warmup must be a whole number >= 0"), ({"guidance": -1}, "guidance must be a finite number from 0 to 1000"),
                        ({"step_counts": [10, 0]}, "step count must be a whole number from 1 to 10000"), ({"guidance_scales": [float("inf")]}, "guidance scale must be a finite number"),
                        ({"batch_sizes": [True]}, "batch size must be a whole number"), ({"threads": 0}, "threads must be a whole number from 1 to 4096")):
        with pytest.raises(ConfigError, match=words):
            RunConfig.from_mapping(data)
    assert RunConfig.from_mapping({"guidance": 5, "seed": -3}).guidance == 5.0  # ints are numbers; any seed is a seed


def test_a_file_a_mapping_and_a_flag_fail_and_convert_alike(tmp_path, capsys):
    """One schema: the same bad value gives the same message from Python, YAML, TOML, JSON and the
    command line, and a comma-separated list reads the same everywhere."""
    import yaml

    from diffprof.cli import main

    messages = set()
    for suffix, text in ((".yaml", yaml.safe_dump({"steps": 0})), (".json", json.dumps({"steps": 0})), (".toml", "steps = 0\n")):
        (tmp_path / f"c{suffix}").write_text(text)
        with pytest.raises(ConfigError) as info:
            RunConfig.load(tmp_path / f"c{suffix}")
        messages.add(info.value.message)
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping({"steps": 0})
    messages.add(info.value.message)
    assert main(["bench", "--steps", "0", "--db", str(tmp_path / "x.db")]) == 2
    assert f"error: {messages.pop()}" in capsys.readouterr().err and not messages
    (tmp_path / "l.yaml").write_text("step_counts: 10, 20\nprecisions: float16,bf16\n")
    loaded = RunConfig.load(tmp_path / "l.yaml")
    assert loaded.step_counts == [10, 20] and loaded.precisions == ["fp16", "bf16"]
    assert RunConfig.from_mapping({"step_counts": "10,20"}).step_counts == [10, 20]
    with pytest.raises(ConfigError, match="step count takes whole numbers, got 'x'"):
        RunConfig.from_mapping({"step_counts": "10,x"})


def test_to_request_carries_every_field_a_call_needs():
    from dataclasses import fields

    from diffprof.engine import GenerationRequest

    c = RunConfig.from_mapping({"prompt": "a blue square", "negative_prompt": "blurry", "task": "img2img", "scheduler": "euler", "steps": 7,
                                "guidance": 3.5, "width": 64, "height": 48, "batch": 2, "seed": 11, "strength": 0.5, "image": "in.png", "mask": "m.png"})
    request = c.to_request()
    assert isinstance(request, GenerationRequest)
    source = {f.name: f.name for f in fields(GenerationRequest)} | {"num_images": "batch"}
    for f in fields(GenerationRequest):
        if f.name == "decode":  # the engine's own option (latents only), not a config field
            assert request.decode is True
            continue
        assert getattr(request, f.name) == getattr(c, source[f.name]), f.name
    assert RunConfig().to_request() == GenerationRequest()  # the two sets of defaults agree


def test_config_imports_nothing_above_layer_1():
    """config/ is layer 2: every import, function-level included, goes to layer 0 or 1 (or config itself)."""
    import ast
    from pathlib import Path

    import diffprof.config

    allowed = {"errors", "units", "stats", "fileio", "clock", "metrics", "results", "request",
               "models", "environment", "profiler", "analysis", "config"}
    seen: dict[str, str] = {}
    for path in Path(diffprof.config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("diffprof."):
                    seen[name] = path.name
    assert seen, "the walk found config's own imports"
    above = {name: where for name, where in seen.items() if name.split(".")[1] not in allowed}
    assert not above, f"config imports above layer 1: {above}"


def test_checking_names_imports_neither_torch_nor_diffusers():
    """The schema, the scheduler names and the engine package load without torch/diffusers, so a
    bad flag is refused without paying for them."""
    import subprocess
    import sys

    code = ("import sys; from diffprof.config import RunConfig; RunConfig.from_mapping({'steps': 3}); "
            "from diffprof.engine.schedulers import check_scheduler; check_scheduler('euler'); "
            "from diffprof.engine import GenerationRequest; from diffprof.profiler import LEVELS; "
            "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_config_precision_names_agree_with_the_engine():
    from diffprof import config
    from diffprof.engine import precision

    assert set(config.PRECISIONS) == set(precision.DTYPES)
    assert set(config.DEVICE_DEPENDENT) == set(precision.DEVICE_PRECISIONS)


def test_yaml_toml_json_files(tmp_path):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"seo": SEO}))  # nested under one key, as SEOConfig files are
    (tmp_path / "c.json").write_text(json.dumps({"steps": 7, "suites": ["steps"]}))
    (tmp_path / "c.toml").write_text('steps = 9\nschedulers = ["ddim"]\n')
    assert RunConfig.load(tmp_path / "c.yaml").steps == 4
    assert RunConfig.load(tmp_path / "c.json").steps == 7
    assert RunConfig.load(tmp_path / "c.toml", overrides={"steps": 3}).steps == 3
    (tmp_path / "bad.yaml").write_text("model: tiny-sd\nsteps: [1, 2\n")
    with pytest.raises(ConfigError, match=r"cannot parse bad\.yaml, line \d+ column \d+: ") as info:
        RunConfig.load(tmp_path / "bad.yaml")
    assert info.value.hint == "fix the syntax at that line"
    (tmp_path / "bad.json").write_text('{"steps": 4,\n "model": }')
    with pytest.raises(ConfigError, match=r"cannot parse bad\.json, line 2 column \d+: "):
        RunConfig.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.yaml")


def test_save_round_trip(tmp_path):
    c = RunConfig.from_mapping({"steps": 12, "optimize": ["vae_tiling"], "scheduler": "unipc"})
    assert RunConfig.load(c.save(tmp_path / "tuned.yaml")) == c


def test_parse_resolution():
    assert parse_resolution("512x768") == (512, 768)
    assert parse_resolution("64") == (64, 64)


def test_optimizations_parse_round_trip():
    o = Optimizations.parse("vae_slicing,compile=unet+vae,compile_mode=max-autotune,fuse_qkv")
    assert o.vae_slicing and o.fuse_qkv and o.compile == ("unet", "vae") and o.compile_mode == "max-autotune"
    assert Optimizations.parse(o.switches()) == o
    assert Optimizations.parse(["none"]).label == "none"


@pytest.mark.parametrize("switches", ["none", "vae_slicing", "vae_slicing,compile=unet+vae,fuse_qkv", "compile=vae+unet,model_cpu_offload", "fast,fp8", "fast,kernel_tuning", "fast,compile_regions"])
def test_a_label_reads_back_as_its_switches(switches):
    """Stores, tune settings and memory-suite options keep the ``+``-joined label; reading it back must
    not split ``compile=unet+vae`` into a switch ``vae``."""
    from diffprof.engine.switches import label_switches
    from diffprof.estimate.calibration import CalibrationKey
    from diffprof.tune.space import Setting

    o = Optimizations.parse(switches)
    assert Optimizations.parse(label_switches(o.label)) == o
    assert CalibrationKey("sd15", "cuda", "fp16", o.label).switches == label_switches(o.label) == Setting("euler", 8, "fp16", o.label).switches


@pytest.mark.parametrize(
    "switches, precision, fragment",
    [
        (["model_cpu_offload"], "fp32", "needs a CUDA device"),
        ([], "fp16", "fp16 on cpu"),
        (["fuse_qkv", "attention_slicing"], "fp32", "fuse_qkv needs sdpa"),
        (["kernel_tuning"], "fp32", "nothing is compiled"),
        (["compile_regions"], "fp32", "nothing is compiled"),
    ],
)
def test_impossible_combinations_say_why(switches, precision, fragment):
    import torch

    with pytest.raises(ConfigError, match=fragment):
        Optimizations.parse(switches).validate(torch.device("cpu"), precision)


def test_precision_resolution():
    import torch

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("half", torch.device("cpu")) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"


def test_fast_preset_expands_and_round_trips():
    o = Optimizations.parse(["fast"])
    assert o.cuda_graph and o.fast_loop and o.fuse_qkv and o.channels_last and o.vae_bf16 and not o.cudnn_benchmark
    assert o.compile == ("unet", "vae")
    assert o.label == "fast" and Optimizations.parse(o.switches()) == o
    ablated = Optimizations.parse(["fast"]).switches()
    assert "fast" in ablated
    minus_graph = Optimizations.parse(["fuse_qkv", "channels_last", "compile=unet+vae", "vae_bf16"])
    assert not minus_graph.cuda_graph and minus_graph.label != "fast"


def test_cuda_graph_conflicts_say_why():
    import torch

    with pytest.raises(ConfigError, match="nest graphs"):
        Optimizations.parse(["cuda_graph", "compile_mode=reduce-overhead"]).validate(torch.device("cuda"), "fp16")


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune-no-cudagraphs"])
def test_compile_gets_the_modes_options_plus_diffprofs_tuning(mode, monkeypatch):
    """torch.compile takes a mode or options, not both: diffprof passes the mode's own options plus
    its tuning, per compile (not torch's global config, which would leak into later compiles)."""
    import torch
    from torch._inductor import list_mode_options

    from diffprof.engine.apply import apply_optimizations

    seen: dict[str, dict] = {}

    def fake_compile(module, **kw):
        seen[type(module).__name__] = kw
        return module

    class Pipe:
        def __init__(self):
            self.unet = torch.nn.Linear(2, 2)
            self.vae = torch.nn.Module()
            self.vae.decoder = torch.nn.Conv2d(2, 2, 1)

        def to(self, device):
            return self

    monkeypatch.setattr(torch, "compile", fake_compile)
    apply_optimizations(Pipe(), Optimizations.parse([f"compile=unet+vae,compile_mode={mode},kernel_tuning"]), torch.device("cpu"))
    assert set(seen) == {"Linear", "Conv2d"}
    for kw in seen.values():
        assert "mode" not in kw
        options = kw["options"]
        assert options.items() >= list_mode_options(mode).items()
        assert options["conv_1x1_as_mm"] and options["coordinate_descent_tuning"]
    import torch._inductor.config as inductor

    assert not inductor.coordinate_descent_tuning  # the global config is untouched
    seen.clear()
    apply_optimizations(Pipe(), Optimizations.parse(["compile"]), torch.device("cpu"))
    assert "coordinate_descent_tuning" not in seen["Linear"]["options"]


@pytest.mark.parametrize("dtype, granularity", [("float16", "PerTensor"), ("bfloat16", "PerRow")])
def test_fp8_quantizes_the_unet_without_touching_inductors_global_config(dtype, granularity, monkeypatch):
    """torchao's default config switches on coordinate-descent tuning for every later compile in the
    process (an SDXL compile then ran for more than 8 minutes); diffprof's must not."""
    import torch

    torchao_quantization = pytest.importorskip("torchao.quantization")
    import torch._inductor.config as inductor

    from diffprof.engine.apply import apply_optimizations
    from diffprof.engine.weights import fp8_worthy

    calls = []
    monkeypatch.setattr(torchao_quantization, "quantize_", lambda module, config, filter_fn: calls.append((module, config, filter_fn)))

    class Pipe:
        def __init__(self):
            self.unet = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 8)).to(getattr(torch, dtype))
            self.unet.dtype = getattr(torch, dtype)  # what diffusers' ModelMixin.dtype gives

        def to(self, device):
            return self

    pipe = Pipe()
    before = (inductor.coordinate_descent_tuning, inductor.coordinate_descent_check_all_directions)
    apply_optimizations(pipe, Optimizations.parse(["fp8"]), torch.device("cpu"))
    (module, config, filter_fn), = calls
    assert module is pipe.unet and config.set_inductor_config is False
    assert {type(g).__name__ for g in (config.granularity if isinstance(config.granularity, list) else [config.granularity])} == {granularity}
    assert [filter_fn(m, n) for n, m in pipe.unet.named_children()] == [True, False]  # small layers stay in half precision
    assert fp8_worthy(torch.nn.Conv2d(1024, 1024, 1), "conv") is False
    assert (inductor.coordinate_descent_tuning, inductor.coordinate_descent_check_all_directions) == before


def test_vae_bf16_with_sequential_offload_is_refused_with_the_reason():
    from diffprof.engine.switches import Optimizations

    with pytest.raises(ConfigError, match="vae_bf16 cannot be combined with sequential_cpu_offload") as err:
        Optimizations.parse(["vae_bf16", "sequential_cpu_offload"]).validate(torch.device("cuda"), "fp16")
    assert "model_cpu_offload" in err.value.hint
