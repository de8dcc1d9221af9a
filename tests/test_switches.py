"""The switch registry: every entry parses, labels, validates, yields and applies through it; the
process-global settings that switches hold come back when their holder closes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch

from diffprof.engine import switches
from diffprof.engine.apply import apply_optimizations, compile_conv_blocks
from diffprof.engine.process_settings import RECOMPILE_LIMIT, ProcessSetting
from diffprof.engine.switch import Phase, Rule, Step, Switch, needs_cuda
from diffprof.engine.switches import (
    COMPILE_MODES,
    OFFLOADS,
    OTHER_ATTENTION,
    REGISTRY,
    Optimizations,
    expand_fast,
    fast_switches,
    label_switches,
    switch_names,
    uncompiled,
    yield_to,
)
from diffprof.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
#: Every switch as a user may type it: each registered name (compile_mode takes a value), and values.
TOKENS = [*(n for n in switch_names() if n != "compile_mode"), "compile=unet+vae", "compile=vae", "compile=text_encoder+unet", "compile=transformer",
          *(f"compile_mode={m}" for m in COMPILE_MODES), "group_offload=leaf", "group_offload=block"]


@pytest.fixture
def gpu_like(monkeypatch):
    """Validation as on an H100 with every optional package: find_spec says installed, capability 9.0."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: real("json") if name in ("xformers", "torchao") else real(name, *a))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))


# ------------------------------------------------------------------- the registry
def test_entries_name_real_fields_switches_and_phases():
    names = {f.name for f in fields(Optimizations)}
    for s in REGISTRY:
        assert s.help and set(s.sets) <= names, s.name
        assert set(s.yields_to) | set(s.implies) <= set(REGISTRY.by_name), s.name
        assert all(isinstance(step.phase, Phase) and callable(step.run) for step in s.apply), s.name
    assert {s.name for s in REGISTRY if s.places} == {*OFFLOADS, "t5_offload"}
    for group in REGISTRY.groups:
        assert len([s for s in REGISTRY if s.group is group]) > 1


@pytest.mark.parametrize("token", TOKENS)
def test_every_switch_round_trips(token):
    opts = Optimizations.parse(token)
    assert Optimizations.parse(opts.switches()) == opts
    assert Optimizations.parse(label_switches(opts.label)) == opts


def test_a_set_of_every_kind_round_trips_in_label_order():
    """Labels are stored (runs, calibrations, tune settings): their order is the registry's, whatever
    order the user typed."""
    typed = ("compile_regions,kernel_tuning,layerwise_casting,vae_bf16,cudnn_benchmark,text_cache,cuda_graph,compile_mode=max-autotune,compile=unet+vae,"
             "channels_last,drop_t5,t5_offload,vae_tiling,vae_slicing,eager_attention")
    opts = Optimizations.parse(typed)
    assert opts.label == ("eager_attention+vae_slicing+vae_tiling+t5_offload+drop_t5+channels_last+compile=unet+vae+"
                          "compile_mode=max-autotune+cuda_graph+text_cache+cudnn_benchmark+vae_bf16+layerwise_casting+kernel_tuning+compile_regions")
    assert Optimizations.parse(label_switches(opts.label)) == opts
    assert Optimizations.parse("fast,vae_slicing").label == "fast+vae_slicing"
    assert Optimizations.parse("fast_loop,cuda_graph").switches() == ["cuda_graph"]  # implied: left out


def test_unknown_switch_names_every_valid_one():
    with pytest.raises(ConfigError, match="unknown optimization 'vae_slicin'") as err:
        Optimizations.parse("vae_slicin")
    assert "did you mean 'vae_slicing'" in err.value.hint
    assert all(name in err.value.hint for name in (*REGISTRY.by_name, "fast"))


# --------------------------------------------------------------------- validation
#: (switches, device, precision, packages installed, exact message, exact hint): one per rule.
RULES = [
    ("xformers", CPU, "fp32", False, "xformers attention needs the xformers package, which is not installed", "pip install xformers, or use sdpa"),
    ("xformers", CPU, "fp32", True, "xformers attention runs on CUDA only", "use sdpa on the CPU"),
    ("model_cpu_offload", CPU, "fp32", True, "model_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory",
     "drop the offload switch when running on the CPU"),
    ("sequential_cpu_offload", CPU, "bf16", True, "sequential_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory",
     "drop the offload switch when running on the CPU"),
    ("fuse_qkv,attention_slicing", CPU, "fp32", True, "fuse_qkv needs sdpa attention, not slicing", "drop fuse_qkv or the attention switch"),
    ("compile,sequential_cpu_offload", CUDA, "fp16", True,
     "compile cannot be combined with sequential_cpu_offload: its per-layer hooks move weights on every call", "use model_cpu_offload with compile, or drop compile"),
    ("compile_mode=reduce-overhead", CPU, "fp32", True, "compile_mode=reduce-overhead uses CUDA graphs and needs a CUDA device", "use compile_mode=default on the CPU"),
    ("cuda_graph", CPU, "fp32", True, "cuda_graph (and the fast preset) needs a CUDA device", "on the CPU use fast_loop, fuse_qkv or channels_last"),
    ("fast", CPU, "bf16", True, "cuda_graph (and the fast preset) needs a CUDA device", "on the CPU use fast_loop, fuse_qkv or channels_last"),
    ("cuda_graph,model_cpu_offload", CUDA, "fp16", True, "cuda_graph cannot be combined with CPU offload: a graph needs every weight resident on the GPU",
     "drop cuda_graph (or fast), or the offload switch"),
    ("cuda_graph,compile_mode=reduce-overhead", CUDA, "fp16", True,
     "cuda_graph already graphs the whole loop; compile_mode=reduce-overhead would nest graphs", "use compile_mode=default or max-autotune-no-cudagraphs with cuda_graph"),
    ("vae_bf16,sequential_cpu_offload", CUDA, "fp16", True,
     "vae_bf16 cannot be combined with sequential_cpu_offload: it casts the VAE, whose weights that offload keeps off the GPU", "drop vae_bf16, or use model_cpu_offload"),
    ("fp8", CPU, "fp32", True, "fp8 needs a CUDA GPU with float8 tensor cores (Ada/Hopper)", "drop fp8 on the CPU"),
    ("fp8", CUDA, "fp16", False, "fp8 needs the torchao package, which is not installed", "pip install torchao"),
    ("fp8", torch.device("cuda", 1), "fp16", True, "fp8 needs compute capability 8.9 or newer (Ada, Hopper)", "drop fp8 on this GPU"),
    ("group_offload", CPU, "fp32", True, "group_offload needs a CUDA device: it streams weights from host memory on CUDA streams",
     "drop the offload switch when running on the CPU"),
    ("t5_offload", CPU, "bf16", True, "t5_offload needs a CUDA device: it streams T5's weights from host memory on a CUDA stream",
     "drop the offload switch when running on the CPU"),
    ("t5_offload,group_offload=leaf", CUDA, "bf16", True, "t5_offload is part of group_offload already: every component, T5 included, is offloaded",
     "drop t5_offload, or the other offload switch"),
    ("drop_t5,t5_offload", CUDA, "bf16", True, "drop_t5 leaves no T5 to offload", "choose drop_t5 or t5_offload"),
    ("int8_weights", CPU, "bf16", False, "int8_weights needs the torchao package, which is not installed", "pip install torchao"),
    ("kernel_tuning", CPU, "fp32", True, "kernel_tuning changes how torch.compile works; nothing is compiled", "add compile (or fast), or drop kernel_tuning"),
    ("compile_regions", CUDA, "fp16", True, "compile_regions changes how torch.compile works; nothing is compiled", "add compile (or fast), or drop compile_regions"),
]


def _validate(monkeypatch, switches_: str, device: torch.device, precision: str, installed: bool) -> tuple[Optimizations, ConfigError | None]:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (real("json") if installed else None) if name in ("xformers", "torchao") else real(name, *a))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0) if getattr(device, "index", None) == 1 else (9, 0))
    opts = Optimizations.parse(switches_)
    try:
        opts.validate(device, precision)
    except ConfigError as exc:
        return opts, exc
    return opts, None


@pytest.mark.parametrize("switches_, device, precision, installed, message, hint", RULES)
def test_every_refusal_says_why_and_what_to_do(switches_, device, precision, installed, message, hint, monkeypatch):
    _, err = _validate(monkeypatch, switches_, device, precision, installed)
    assert err is not None and (err.message, err.hint) == (message, hint)


def test_every_rule_in_the_registry_has_a_case_above(monkeypatch):
    """A new rule without a case in RULES fails here, so each refusal is tested with its text."""
    fired: set[int] = set()
    for switches_, device, precision, installed, message, _ in RULES:
        opts, err = _validate(monkeypatch, switches_, device, precision, installed)
        for s in REGISTRY:
            for rule in (*s.requires, *s.conflicts):
                if (rule.message(opts) if callable(rule.message) else rule.message) == message:
                    fired.add(id(rule))
    rules = [rule for s in REGISTRY for rule in (*s.requires, *s.conflicts)]
    assert all(rule.hint for rule in rules)
    assert {id(r) for r in rules} == fired


@pytest.mark.parametrize("typed, message, hint", [
    ("eager_attention,xformers", "choose one attention implementation, not eager_attention and xformers", "keep one attention switch"),
    ("model_cpu_offload,sequential_cpu_offload", "model_cpu_offload and sequential_cpu_offload exclude each other",
     "each offload mode places every component itself; pick one"),
    ("group_offload=leaf,model_cpu_offload", "group_offload and model_cpu_offload exclude each other", "each offload mode places every component itself; pick one"),
    ("fp8,int8_weights", "fp8 and int8_weights both change how the denoiser's weights are stored; choose one",
     "keep one of fp8, int8_weights and layerwise_casting"),
    ("layerwise_casting,int8_weights", "layerwise_casting and int8_weights both change how the denoiser's weights are stored; choose one",
     "keep one of fp8, int8_weights and layerwise_casting"),
])
def test_two_of_a_group_are_refused_when_parsed(typed, message, hint):
    with pytest.raises(ConfigError) as err:
        Optimizations.parse(typed)
    assert (err.value.message, err.value.hint) == (message, hint)


def test_capable_gpu_with_the_packages_takes_every_switch(gpu_like):
    for token in TOKENS:
        needs_compile = "compile" in REGISTRY.get(token).needs if REGISTRY.get(token) else False
        Optimizations.parse([token, "compile"] if needs_compile else [token]).validate(CUDA, "fp16")


# ------------------------------------------------------------------------ yield_to
USER = ["fast", "vae_slicing", "compile_regions"]
FAST_KEPT = ["channels_last", "compile=unet+vae", "text_cache", "vae_slicing", "compile_regions"]


@pytest.mark.parametrize("cell, keep, dropped", [
    ("model_cpu_offload", FAST_KEPT, ["fuse_qkv", "cuda_graph", "vae_bf16"]),
    ("group_offload", FAST_KEPT, ["fuse_qkv", "cuda_graph", "vae_bf16"]),
    ("sequential_cpu_offload", ["channels_last", "text_cache", "vae_slicing"], ["fuse_qkv", "compile=unet+vae", "cuda_graph", "vae_bf16", "compile_regions"]),
    *((a, ["channels_last", "compile=unet+vae", "cuda_graph", "text_cache", "vae_bf16", "vae_slicing", "compile_regions"], ["fuse_qkv"]) for a in OTHER_ATTENTION),
    ("sdpa", USER, []),
    ("none", USER, []),
    ("vae_tiling", USER, []),
])
def test_yield_to_each_offload_and_attention(cell, keep, dropped):
    assert yield_to(USER, Optimizations.parse(cell)) == (keep, dropped)


@pytest.mark.parametrize("cell", [*OFFLOADS, *OTHER_ATTENTION])
def test_a_cell_replaces_the_users_switch_of_its_group(cell):
    """The cell's attention replaces the user's attention, its offload the user's offload (two of a
    group would be refused)."""
    for user in ("eager_attention", "model_cpu_offload"):
        kept, dropped = yield_to([user, "vae_tiling"], Optimizations.parse(cell))
        same_group = REGISTRY.get(user).group is REGISTRY.get(cell).group
        assert (kept, dropped) == ((["vae_tiling"], [user]) if same_group else ([user, "vae_tiling"], [])), user


@pytest.mark.parametrize("cell", [*OFFLOADS, *OTHER_ATTENTION])
def test_what_yields_leaves_a_set_that_validates(cell, gpu_like):
    """yield_to covers what validate refuses: every user set that runs on a GPU, with the cell's
    switch stacked on what it keeps, still runs."""
    for user in ([t] for t in TOKENS):
        for base in (user, ["fast", *user]):
            try:
                Optimizations.parse(base).validate(CUDA, "fp16")
            except ConfigError:
                continue
            kept, _ = yield_to(base, Optimizations.parse(cell))
            Optimizations.parse([*kept, cell]).validate(CUDA, "fp16")


def test_the_memory_suites_offload_cell_replaces_the_users_offload():
    """`-O model_cpu_offload` with the memory suite: its sequential cell runs sequential offload alone
    and says so (two offloads were refused), the other cells keep the user's offload."""
    from diffprof.config import RunConfig
    from diffprof.suites import expand

    config = RunConfig.from_mapping({"suites": ["memory"], "optimize": ["model_cpu_offload"], "memory_optimizations": ["none", "vae_slicing", "sequential_cpu_offload"]})
    cells = {c.labels["optimization"]: c.config.optimize for c in expand(config)}
    assert cells == {"none": ["model_cpu_offload"], "vae_slicing": ["model_cpu_offload", "vae_slicing"],
                     "sequential_cpu_offload (no model_cpu_offload)": ["sequential_cpu_offload"]}


def test_uncompiled_drops_compile_and_what_needs_it():
    assert uncompiled(["fast", "compile_mode=max-autotune", "kernel_tuning", "vae_tiling"]) == ["channels_last", "fuse_qkv", "cuda_graph", "text_cache", "vae_bf16",
                                                                                                "vae_tiling"]


# ------------------------------------------------------------------ listing, ablation
def test_the_listing_shows_every_switch(capsys, monkeypatch):
    from diffprof.cli.app import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["optimizations"]) == 0
    out = capsys.readouterr().out
    for s in REGISTRY:
        assert (s.listed_as or s.name) in out and s.help[:60] in out, s.name
    assert "fast" in out and ", ".join(expand_fast(["fast"]))[:60] in out


def test_ablation_cells_follow_the_registrys_fast_set():
    from diffprof.config import RunConfig
    from diffprof.suites import expand

    cells = expand(RunConfig.from_mapping({"suites": ["ablation"], "device": "cpu"}))
    assert [c.labels["variant"] for c in cells] == ["none", "fast", *(f"fast - {s.fast}" for s in fast_switches())]
    fast = Optimizations.parse(cells[1].config.optimize)
    assert fast.label == "fast" and Optimizations.parse(cells[0].config.optimize).label == "none"
    for switch, cell in zip(fast_switches(), cells[2:]):
        opts = Optimizations.parse(cell.config.optimize)
        assert set(expand_fast(["fast"])) - set(opts.switches()) == {switch.fast} and opts.fast_loop


# -------------------------------------------------------------- order of application
class Recorder:
    """A pipeline that records the public calls a step makes, in order."""

    def __init__(self, calls: list[str], name: str = "pipe") -> None:
        self._calls, self._name = calls, name
        if name == "pipe":
            self.unet, self.vae = Recorder(calls, "unet"), Recorder(calls, "vae")
            self.vae.decoder = torch.nn.Identity()

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return lambda *a, **kw: self._calls.append(f"{self._name}.{attr}")

    def modules(self):
        return iter(())


@pytest.mark.parametrize("typed, calls", [
    ("compile,vae_tiling,vae_slicing,channels_last,fuse_qkv,cudnn_benchmark",
     ["pipe.fuse_qkv_projections", "unet.to", "vae.to", "vae.enable_slicing", "vae.enable_tiling", "pipe.to", "compile Recorder", "compile Identity"]),
    ("model_cpu_offload,compile,channels_last,attention_slicing",
     ["pipe.enable_attention_slicing", "unet.to", "vae.to", "compile Recorder", "compile Identity", "pipe.enable_model_cpu_offload"]),
    ("sequential_cpu_offload,vae_tiling,eager_attention", ["unet.set_attn_processor", "vae.set_attn_processor", "vae.enable_tiling", "pipe.enable_sequential_cpu_offload"]),
])
def test_steps_run_in_phase_order_whatever_order_they_were_typed_in(typed, calls, monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: seen.append(f"compile {type(module).__name__}") or module)
    typed = typed.replace("compile,", "compile=unet+vae,")
    with apply_optimizations(Recorder(seen), Optimizations.parse(typed), CPU):
        assert seen == calls


# ---------------------------------------------------------- process-global settings
def test_a_held_setting_comes_back_when_its_last_holder_leaves():
    store = {"v": 1}
    setting = ProcessSetting("v", lambda: store["v"], lambda v: store.update(v=v), combine=max)
    a, b = setting.held(5), setting.held(3)
    a.__enter__()
    b.__enter__()
    assert store["v"] == 5  # raised, never lowered
    a.__exit__(None, None, None)  # out of order: b still holds it
    assert store["v"] == 5
    b.__exit__(None, None, None)
    assert store["v"] == 1
    with pytest.raises(RuntimeError), setting.held(9):
        raise RuntimeError
    assert store["v"] == 1


@pytest.mark.parametrize("before", [False, True])
def test_cudnn_benchmark_is_restored_when_the_settings_close(before, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", before)
    settings = apply_optimizations(Recorder([]), Optimizations.parse("cudnn_benchmark"), CPU)
    assert torch.backends.cudnn.benchmark is True
    settings.close()
    assert torch.backends.cudnn.benchmark is before


def test_a_failing_step_restores_what_was_entered_before_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)

    class Broken(Recorder):
        def to(self, device):
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        apply_optimizations(Broken([]), Optimizations.parse("cudnn_benchmark"), CPU)
    assert torch.backends.cudnn.benchmark is False


def test_engine_close_restores_cudnn_benchmark(monkeypatch):
    from diffprof.engine import Engine

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    engine = Engine.load("tiny-sd", device="cpu", optimize=["cudnn_benchmark"])
    assert torch.backends.cudnn.benchmark is True
    engine.close()
    assert torch.backends.cudnn.benchmark is False


def test_a_global_recompile_limit_is_held_by_the_settings_and_restored(monkeypatch):
    """torch < 2.12 has no per-call recompile_limit: compile_conv_blocks raises Dynamo's global one
    for as long as the settings stack is open."""
    from diffusers.models.resnet import ResnetBlock2D

    def old_compile(model, *, backend="inductor", dynamic=None, options=None):  # no recompile_limit
        return model

    monkeypatch.setattr(torch, "compile", old_compile)
    model = torch.nn.Sequential(*(ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=None, groups=2) for _ in range(3)))
    before = RECOMPILE_LIMIT.value
    with pytest.raises(TypeError, match="settings"):
        compile_conv_blocks(model, {})
    with ExitStack() as settings:
        assert compile_conv_blocks(model, {}, settings=settings) == 3
        assert RECOMPILE_LIMIT.value == max(before, 24)
    assert RECOMPILE_LIMIT.value == before


# ---------------------------------------------------------------- cheap to import
def test_the_registry_loads_and_validates_without_torch(tmp_path):
    """Issue 18 checks a config before torch loads: switches, apply and precision import nothing of
    torch or diffusers, and parse + validate run without them (diffprof.engine's __init__ is left
    out here: it loads the Engine)."""
    engine_dir = Path(switches.__file__).parent
    code = f"""
import sys, types, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "diffusers", "transformers"):  # numpy (~0.1 s) may load: the schema's stats use it
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
package = types.ModuleType("diffprof.engine"); package.__path__ = [{str(engine_dir)!r}]
sys.modules["diffprof.engine"] = package
from diffprof.engine.switches import Optimizations
from diffprof.engine.precision import check_precision
from diffprof.errors import ConfigError
opts = Optimizations.parse("fast,vae_slicing")
try:
    opts.validate(types.SimpleNamespace(type="cpu"), check_precision("bf16"))
except ConfigError as e:
    print(e.message)
print(opts.label, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(engine_dir.parents[1])}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["cuda_graph (and the fast preset) needs a CUDA device", "fast+vae_slicing []"]


# ------------------------------------------------- docs/architecture.md's worked example
@dataclass(frozen=True)
class WithTF32(Optimizations):
    tf32: bool = False  # the field the new switch sets


TF32 = ProcessSetting("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision)


def hold_tf32(ctx) -> None:
    ctx.settings.enter_context(TF32.held("high"))


TF32_SWITCH = Switch(
    "tf32", "TF32 tensor cores for fp32 matmuls (Ampere and newer): much faster fp32, 10-bit mantissa", {"tf32": True},
    apply=(Step(Phase.GLOBAL, hold_tf32),),
    requires=(needs_cuda("tf32 needs a CUDA GPU (Ampere or newer)", "drop tf32 on the CPU"),),
    conflicts=(Rule(lambda o, t: t.precision != "fp32", "tf32 changes fp32 matmuls only; at fp16/bf16 it does nothing", "drop tf32, or use --precision fp32"),),
    yields_to=("sequential_cpu_offload",), fast="tf32",
)


def test_a_new_switch_is_one_registry_entry(monkeypatch, capsys):
    """The worked example: with the entry (and its field) in the registry, parse, labels, validate,
    yield_to, apply, the listing and the ablation suite all take it up."""
    monkeypatch.setattr(switches, "REGISTRY", REGISTRY.plus(TF32_SWITCH, after="cudnn_benchmark"))
    opts = WithTF32.parse("vae_slicing,tf32")
    assert opts.tf32 and opts.label == "vae_slicing+tf32" and WithTF32.parse(label_switches(opts.label)) == opts
    assert WithTF32.parse("fast").label == "fast" and WithTF32.parse("fast").tf32
    assert WithTF32.parse("cuda_graph,tf32,cudnn_benchmark").label == "cuda_graph+cudnn_benchmark+tf32"
    with pytest.raises(ConfigError, match="tf32 needs a CUDA GPU"):
        opts.validate(CPU, "fp32")
    with pytest.raises(ConfigError, match="at fp16/bf16 it does nothing") as err:
        opts.validate(CUDA, "fp16")
    assert err.value.hint == "drop tf32, or use --precision fp32"
    opts.validate(CUDA, "fp32")
    assert yield_to(["tf32", "vae_tiling"], WithTF32.parse("sequential_cpu_offload")) == (["vae_tiling"], ["tf32"])

    before = torch.get_float32_matmul_precision()
    with apply_optimizations(Recorder([]), opts, CPU):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before

    from diffprof.cli.app import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["optimizations"]) == 0
    assert "tf32" in capsys.readouterr().out

    from diffprof.config import RunConfig
    from diffprof.suites import expand

    cells = {c.labels["variant"]: WithTF32.parse(c.config.optimize) for c in expand(RunConfig.from_mapping({"suites": ["ablation"], "device": "cpu"}))}
    assert cells["fast"].tf32 and not cells["fast - tf32"].tf32 and cells["fast - tf32"].cuda_graph
    assert not cells["none"].tf32
