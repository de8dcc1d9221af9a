"""Precision and memory/speed optimizations as named, validated switches: the registry.

Users name switches (``--optimize vae_slicing,model_cpu_offload``). Each is one :class:`Switch`
entry in :data:`REGISTRY`: its help, the :class:`Optimizations` fields it sets, what it needs and
what it cannot be combined with (the error and its hint), its steps on a pipeline and their phase,
what it yields to in a suite cell, and whether ``fast`` holds it. Parsing, labels, validation,
applying (:func:`~diffprof.engine.apply.apply_optimizations`), ``diffprof optimizations`` and the
ablation suite are loops over it. The registry order is the order of a label; the order of
application is each step's :class:`~diffprof.engine.switch.Phase`.

Cheap to import: no torch or diffusers until a pipeline is changed or a GPU's capability is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal

from diffprof.engine import apply
from diffprof.engine.apply import COMPILABLE
from diffprof.engine.precision import check_precision
from diffprof.engine.switch import (
    Group,
    Phase,
    Registry,
    Step,
    Switch,
    Target,
    conflict,
    needs_capability,
    needs_compile,
    needs_cuda,
    needs_package,
)
from diffprof.errors import ConfigError, unknown_choice

Attention = Literal["sdpa", "xformers", "slicing", "eager"]
Offload = Literal["none", "model", "sequential"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

ATTENTION = Group("attention", lambda seen: f"choose one attention implementation, not {' and '.join(seen)}", "keep one attention switch")
OFFLOAD = Group("offload", lambda seen: "model_cpu_offload and sequential_cpu_offload exclude each other",
                "sequential offload already keeps every layer on the CPU; pick one")
#: What a user's switch yields to in a cell with these (see :func:`yield_to`).
OFFLOADS = ("model_cpu_offload", "sequential_cpu_offload")
OTHER_ATTENTION = ("eager_attention", "xformers", "attention_slicing")


def _sequential(opts: Any) -> bool:
    return bool(opts.offload == "sequential")


def _compile_modules(opts: Any, value: str) -> Mapping[str, Any]:
    modules = tuple(value.split("+")) if value else ("unet",)
    for m in modules:
        if m not in COMPILABLE:
            raise unknown_choice("module to compile", m, COMPILABLE)
    return {"compile": modules}


def _compile_mode(opts: Any, value: str) -> Mapping[str, Any]:
    if value not in COMPILE_MODES:
        raise unknown_choice("compile mode", value, COMPILE_MODES)
    return {"compile_mode": value, "compile": opts.compile or ("unet",)}


#: ``Switch.denoisers`` of the switches that reach only a UNet's attention processors.
UNET = ("unet",)


def _attention(name: str, kind: str, help: str, **kw: Any) -> Switch:
    return Switch(name, help, {"attention": kind}, group=ATTENTION, **kw)


def _step(phase: Phase, run: Any) -> tuple[Step, ...]:
    return (Step(phase, run),)


#: Every switch a user can name (besides the ``fast`` preset), in label order.
REGISTRY = Registry((
    Switch("none", "no optimization (SDPA attention, everything on the device)"),
    _attention("sdpa", "sdpa", "torch scaled_dot_product_attention (flash / memory-efficient kernels); the default"),
    _attention("eager_attention", "eager", "classic attention (explicit softmax(QK^T)V); the pre-PyTorch-2 baseline",
               apply=_step(Phase.ATTENTION, apply.eager_attention), denoisers=UNET),
    _attention("xformers", "xformers", "xformers memory-efficient attention (needs the xformers package and CUDA)",
               apply=_step(Phase.ATTENTION, lambda c: c.pipe.enable_xformers_memory_efficient_attention()),
               requires=(needs_package("xformers", "xformers attention needs the xformers package, which is not installed", "pip install xformers, or use sdpa"),
                         needs_cuda("xformers attention runs on CUDA only", "use sdpa on the CPU"))),
    _attention("attention_slicing", "slicing", "compute attention in slices: less peak memory, usually slower with SDPA (diffusers #4518)",
               apply=_step(Phase.ATTENTION, lambda c: c.pipe.enable_attention_slicing("auto")), denoisers=UNET),
    Switch("vae_slicing", "decode a batch one image at a time: lower VAE peak for batches", {"vae_slicing": True},
           apply=_step(Phase.VAE, lambda c: c.pipe.vae.enable_slicing())),
    Switch("vae_tiling", "decode/encode in overlapping tiles: large images in bounded memory", {"vae_tiling": True},
           apply=_step(Phase.VAE, lambda c: c.pipe.vae.enable_tiling())),
    # Under model offload, compile wraps the models *before* the offload hooks go on: wrapped after,
    # the hook's pre_forward (which accelerate marks torch.compiler.disable) sits inside the compiled
    # call and the UNet ran eagerly (SD 1.5, H200: 57 instead of 179 inductor kernels a call, 39 ms a
    # step against 28 ms for plain eager offload; benchmarks/gpu_offload_compile.py). Compiling is
    # lazy, so placement after it is fine.
    Switch("model_cpu_offload", "keep each model on the CPU until it runs (CUDA only): big memory saving, small slowdown",
           {"offload": "model"}, group=OFFLOAD, places=True,
           apply=_step(Phase.HOOKS, lambda c: c.pipe.enable_model_cpu_offload(device=c.device)),
           requires=(needs_cuda("model_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory", "drop the offload switch when running on the CPU"),)),
    Switch("sequential_cpu_offload", "stream every layer from the CPU (CUDA only): lowest memory, several times slower",
           {"offload": "sequential"}, group=OFFLOAD, places=True,
           apply=_step(Phase.PLACE, lambda c: c.pipe.enable_sequential_cpu_offload(device=c.device)),
           requires=(needs_cuda("sequential_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory", "drop the offload switch when running on the CPU"),)),
    Switch("channels_last", "NHWC memory format for UNet and VAE convolutions", {"channels_last": True}, fast="channels_last",
           apply=_step(Phase.MEMORY_FORMAT, apply.channels_last)),
    Switch("fuse_qkv", "fuse the Q, K, V projections into one matmul (SDPA attention only); the unfused weights become views of the fused ones, "
           "no second copy (with CPU offload diffusers keeps both: +1.25 GiB on SDXL); save such a pipeline with Engine.save_pretrained",
           {"fuse_qkv": True}, fast="fuse_qkv",
           apply=(Step(Phase.FUSE, lambda c: c.pipe.fuse_qkv_projections()), Step(Phase.PLACED, apply.share_fused_weights_if_resident)),
           conflicts=(conflict(lambda o: o.attention != "sdpa", lambda o: f"fuse_qkv needs sdpa attention, not {o.attention}", "drop fuse_qkv or the attention switch"),),
           # offloaded, diffusers keeps the unfused weights beside the fused ones: SDXL with model offload peaked
           # 1.21 GiB higher with it at the same speed (H100; session5/8-h100-offload-elements-sdxl.txt)
           yields_to=(*OFFLOADS, *OTHER_ATTENTION), denoisers=UNET),
    Switch("compile", "torch.compile the UNet (compile=unet+vae to choose modules; compile_mode=... to choose the mode)",
           parse_value=_compile_modules, fast="compile=unet+vae", compiles=True,
           format_value=lambda o: None if not o.compile else "compile" if o.compile == ("unet",) else f"compile={'+'.join(o.compile)}",
           apply=_step(Phase.COMPILE, apply.compile_modules),
           conflicts=(conflict(_sequential, "compile cannot be combined with sequential_cpu_offload: its per-layer hooks move weights on every call",
                               "use model_cpu_offload with compile, or drop compile"),),
           yields_to=("sequential_cpu_offload",)),
    Switch("compile_mode", "torch.compile mode: " + ", ".join(COMPILE_MODES), listed_as="compile_mode=MODE",
           parse_value=_compile_mode, compiles=True,
           format_value=lambda o: f"compile_mode={o.compile_mode}" if o.compile and o.compile_mode != "default" else None,
           requires=(needs_cuda("compile_mode=reduce-overhead uses CUDA graphs and needs a CUDA device", "use compile_mode=default on the CPU",
                                when=lambda o: o.compile_mode == "reduce-overhead"),),
           yields_to=("sequential_cpu_offload",)),
    Switch("fast_loop", "run txt2img through diffprof's own copy of the pipeline's phases (same math, no per-step host work)", {"fast_loop": True},
           yields_to=OFFLOADS),  # offload cells run the pipeline's own loop, the one measured with offload on GPUs
    Switch("cuda_graph", "capture the whole denoising loop in one CUDA graph (implies fast_loop; deterministic schedulers)",
           {"cuda_graph": True}, implies=("fast_loop",), fast="cuda_graph",
           requires=(needs_cuda("cuda_graph (and the fast preset) needs a CUDA device", "on the CPU use fast_loop, fuse_qkv or channels_last"),),
           conflicts=(conflict(lambda o: o.offload != "none", "cuda_graph cannot be combined with CPU offload: a graph needs every weight resident on the GPU",
                               "drop cuda_graph (or fast), or the offload switch"),
                      conflict(lambda o: o.compile_mode == "reduce-overhead",
                               "cuda_graph already graphs the whole loop; compile_mode=reduce-overhead would nest graphs",
                               "use compile_mode=default or max-autotune-no-cudagraphs with cuda_graph")),
           yields_to=OFFLOADS),
    Switch("cudnn_benchmark", "let cuDNN time its convolution algorithms once per shape and keep the fastest", {"cudnn_benchmark": True},
           apply=_step(Phase.GLOBAL, apply.hold_cudnn_benchmark)),
    Switch("vae_bf16", "decode latents in bf16 (SDXL otherwise upcasts its fp16 VAE to fp32)", {"vae_bf16": True}, fast="vae_bf16",
           conflicts=(conflict(_sequential, "vae_bf16 cannot be combined with sequential_cpu_offload: it casts the VAE, whose weights that offload keeps off the GPU",
                               "drop vae_bf16, or use model_cpu_offload"),),
           yields_to=OFFLOADS),  # only diffprof's own loop reads it, and offload cells run the pipeline's
    Switch("fp8", "float8 dynamic quantization of the UNet's linear layers (torchao; Hopper/Ada GPUs)", {"fp8": True},
           apply=_step(Phase.QUANTIZE, apply.quantize_fp8),
           requires=(needs_cuda("fp8 needs a CUDA GPU with float8 tensor cores (Ada/Hopper)", "drop fp8 on the CPU"),
                     needs_package("torchao", "fp8 needs the torchao package, which is not installed", "pip install torchao"),
                     needs_capability((8, 9), "fp8 needs compute capability 8.9 or newer (Ada, Hopper)", "drop fp8 on this GPU")),
           denoisers=UNET),
    Switch("kernel_tuning", "let inductor tune each kernel it generates (coordinate descent): compiles of many minutes "
           "(SD 1.5 and SDXL did not finish in 5-10 min on H100/H200), gain unmeasured", {"kernel_tuning": True},
           requires=(needs_compile("kernel_tuning"),), yields_to=("sequential_cpu_offload",)),
    Switch("compile_regions", "compile the UNet block by block (transformer and ResNet blocks) instead of whole: half the compile, ~5% slower (SDXL)",
           {"compile_regions": True}, requires=(needs_compile("compile_regions"),), yields_to=("sequential_cpu_offload",)),
))

#: What ``fast`` expands to: the entries that name their ``fast`` token; each element stays
#: switchable (the ablation suite removes one at a time). cudnn_benchmark is left out: no measurable
#: gain once the loop is graphed (H200), and its algorithm choice can differ from process to process.
#: fp8 is left out: on SDXL (H100) it moved the final latents 3.4e-2 from eager fp16 (the limit is
#: 2e-2) and saved no time. compile_regions is left out: it halves the SDXL compile (warm start 10 s
#: instead of 22 s) but costs 5% per image on SDXL and 18% on SD 1.5 (H100); kernel_tuning did not
#: finish compiling SD 1.5 in ~330 s (docs/benchmarks.md).
FAST_PRESET: tuple[str, ...] = REGISTRY.fast


def fast_help() -> str:
    return "the fastest known set for CUDA: " + ", ".join(REGISTRY.fast)


def switch_names() -> list[str]:
    """Every name a user can type (``fast`` included)."""
    return [*REGISTRY.by_name, "fast"]


def fast_switches() -> list[Switch]:
    """The entries ``fast`` holds, in registry order."""
    return [s for s in REGISTRY if s.fast]


def expand_fast(switches: Iterable[str]) -> list[str]:
    """``switches`` with ``fast`` replaced by its elements (:data:`FAST_PRESET`), so one can be removed."""
    return [token for switch in switches for token in (REGISTRY.fast if switch == "fast" else (switch,))]


def compiles(switches: Iterable[str]) -> bool:
    """Whether ``switches`` turn torch.compile on (``compile``, ``compile_mode=...``, ``fast``)."""
    return any((s := REGISTRY.get(t)) is not None and s.compiles for t in expand_fast(switches))


def uncompiled(switches: Iterable[str]) -> list[str]:
    """``switches`` less everything that compiles or only shapes a compile (``compile``,
    ``compile=...``, ``compile_mode=...``, the switches that need compile; ``fast`` is expanded
    first): the eager cell of a suite that compares compiled with eager, built from the user's switches."""
    return [t for t in expand_fast(switches) if not ((s := REGISTRY.get(t)) and (s.compiles or "compile" in s.needs))]


def yield_to(switches: Iterable[str], cell: Optimizations) -> tuple[list[str], list[str]]:
    """``switches`` (``fast`` expanded) less those that yield to a switch ``cell`` has on, and what
    was dropped; how a suite measures a memory setting on top of the user's switches instead of
    failing. A switch yields to the cell's own of its group (the cell's attention or offload
    replaces the user's) and to what its entry's ``yields_to`` names, which says why (any CPU
    offload leaves no room for the graph, diffprof's loop or fused QKV; sequential offload none for
    compiling; an attention other than SDPA excludes fused QKV)."""
    switches = list(switches)
    expanded = expand_fast(switches)
    on = {s.name for s, _ in cell.active()}
    groups = {s.group for s, _ in cell.active() if s.group is not None}

    def yields(token: str) -> bool:
        s = REGISTRY.get(token)
        return s is not None and (s.group in groups or bool(on & set(s.yields_to)))

    keep = [t for t in expanded if not yields(t)]
    dropped = [s for s in expanded if s not in keep]
    return (list(dict.fromkeys(keep)), dropped) if dropped else (switches, [])


def label_switches(label: str) -> list[str]:
    """The switch names of an :attr:`Optimizations.label` or a ``+``-joined combination (its inverse):
    ``none`` -> ``[]``; a part that names no switch continues the ``NAME=VALUE`` before it, so
    ``compile=unet+vae`` stays one switch although ``+`` also joins switches."""
    if label == "none":
        return []
    out: list[str] = []
    for token in label.split("+"):
        if out and "=" in out[-1] and REGISTRY.get(token) is None and token != "fast":
            out[-1] += f"+{token}"
        else:
            out.append(token)
    return out


@dataclass(frozen=True)
class Optimizations:
    """A validated set of switches. Build it with :meth:`parse` from the names users type; the
    fields are what the registry's entries set (a new switch with state of its own adds one)."""

    attention: Attention = "sdpa"
    vae_slicing: bool = False
    vae_tiling: bool = False
    offload: Offload = "none"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: tuple[str, ...] = ()
    compile_mode: str = "default"
    fast_loop: bool = False
    cuda_graph: bool = False
    cudnn_benchmark: bool = False
    vae_bf16: bool = False
    fp8: bool = False
    kernel_tuning: bool = False
    compile_regions: bool = False

    @classmethod
    def parse(cls, switches: str | Iterable[str] | None) -> Optimizations:
        """``"vae_slicing,compile=unet+vae,compile_mode=max-autotune"`` -> Optimizations."""
        opts = cls()
        if switches is None:
            return opts
        if isinstance(switches, str):
            switches = [switches]
        seen: dict[Group, list[str]] = {}
        for token in expand_fast(t.strip() for s in switches for t in s.replace(" ", ",").split(",") if t.strip()):
            name, _, value = token.partition("=")
            switch = REGISTRY.by_name.get(name)
            if switch is None:
                raise unknown_choice("optimization", name, switch_names())
            if switch.group is not None:
                seen.setdefault(switch.group, []).append(name)
            opts = replace(opts, **switch.updates(opts, value))
            for implied in switch.implies:
                opts = replace(opts, **REGISTRY.by_name[implied].updates(opts, ""))
        for group in REGISTRY.groups:
            if len(seen.get(group, ())) > 1:
                raise ConfigError(group.message(seen[group]), group.hint)
        return opts

    def active(self) -> list[tuple[Switch, str]]:
        """The entries this set has on, with their tokens, in registry order."""
        defaults = _defaults(type(self))
        return [(s, t) for s in REGISTRY if (t := s.token(self, defaults))]

    def switches(self) -> list[str]:
        """Canonical switch names (the inverse of :meth:`parse`): registry order, implied switches
        left out, ``fast`` for its whole set."""
        on = self.active()
        implied = {n for s, _ in on for n in s.implies}
        out = [t for s, t in on if s.name not in implied]
        if set(REGISTRY.fast) <= set(out):
            out = ["fast"] + [o for o in out if o not in REGISTRY.fast]
        return out

    @property
    def label(self) -> str:
        """``vae_slicing+vae_tiling`` or ``none``: the memory suite's axis value."""
        return "+".join(self.switches()) or "none"

    def validate(self, device: Any, precision: str) -> None:
        """Raise a :class:`ConfigError` that says why (and what to do) for combinations that cannot
        work on ``device`` (a ``torch.device``) at ``precision``: each entry's ``requires`` then
        ``conflicts``, in registry order."""
        precision = check_precision(precision)
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError(
                f"fp16 on {device.type} is not supported: CPU kernels for half precision are missing or very slow",
                "use --precision bf16 or fp32 on the CPU, fp16 on a CUDA GPU",
            )
        target = Target(device, precision)
        for switch, _ in self.active():
            switch.check(self, target)

    def check_denoiser(self, denoiser: str) -> None:
        """Refuse the switches of this set that do not work on a ``denoiser`` (``unet`` or ``transformer``)
        model, named together, before anything is applied."""
        refused = [s.name for s, _ in self.active() if denoiser not in s.denoisers]
        if refused:
            names = " and ".join(refused)
            raise ConfigError(f"{names} {'works' if len(refused) == 1 else 'work'} on UNet models only: diffusers' sliced and eager attention, "
                              f"fused QKV and fp8 reach the UNet's attention processors, not a {denoiser}'s",
                              f"drop {names} for this model")

    def steps(self) -> list[Step]:
        """What applying this set does, in phase order (registry order within a phase); without a
        switch that places the pipeline itself, it goes to the device in :attr:`Phase.PLACE`."""
        on = [s for s, _ in self.active()]
        steps = [step for s in on for step in s.apply]
        if not any(s.places for s in on):
            steps.append(Step(Phase.PLACE, apply.place_on_device))
        return sorted(steps, key=lambda step: step.phase)


@cache
def _defaults(cls: type[Optimizations]) -> Optimizations:
    return cls()
