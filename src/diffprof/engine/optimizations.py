"""Precision and memory/speed optimizations as named, validated switches.

Users name switches (``--optimize vae_slicing,model_cpu_offload``); :class:`Optimizations` parses
them, rejects combinations that cannot work *with the reason*, and applies them to a pipeline
through diffusers' public API only. Order of application matters and is fixed in
:func:`apply_optimizations` (fuse QKV before compile, memory format before offload hooks, ...).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from diffprof.errors import ConfigError, unknown_choice

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
#: Device-dependent choices: ``auto`` = what diffusers users run (fp16 on CUDA, fp32 on CPU);
#: ``half`` = mixed/half precision the device supports (fp16 on CUDA, bf16 on CPU).
DEVICE_PRECISIONS = {"auto": ("fp16", "fp32"), "half": ("fp16", "bf16")}

Attention = Literal["sdpa", "xformers", "slicing", "eager"]
Offload = Literal["none", "model", "sequential"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILABLE = ("unet", "vae", "text_encoder")

#: Every switch a user can name, with what it does (``diffprof optimizations`` prints this).
SWITCHES: dict[str, str] = {
    "none": "no optimization (SDPA attention, everything on the device)",
    "sdpa": "torch scaled_dot_product_attention (flash / memory-efficient kernels); the default",
    "eager_attention": "classic attention (explicit softmax(QK^T)V); the pre-PyTorch-2 baseline",
    "xformers": "xformers memory-efficient attention (needs the xformers package and CUDA)",
    "attention_slicing": "compute attention in slices: less peak memory, usually slower with SDPA (diffusers #4518)",
    "vae_slicing": "decode a batch one image at a time: lower VAE peak for batches",
    "vae_tiling": "decode/encode in overlapping tiles: large images in bounded memory",
    "model_cpu_offload": "keep each model on the CPU until it runs (CUDA only): big memory saving, small slowdown",
    "sequential_cpu_offload": "stream every layer from the CPU (CUDA only): lowest memory, several times slower",
    "channels_last": "NHWC memory format for UNet and VAE convolutions",
    "fuse_qkv": "fuse the Q, K, V projections into one matmul (SDPA attention only); the unfused weights become views of the fused ones, no second copy (with CPU offload diffusers keeps both: +1.25 GiB on SDXL); save such a pipeline with Engine.save_pretrained",
    "compile": "torch.compile the UNet (compile=unet+vae to choose modules; compile_mode=... to choose the mode)",
    "fast_loop": "run txt2img through diffprof's own copy of the pipeline's phases (same math, no per-step host work)",
    "cuda_graph": "capture the whole denoising loop in one CUDA graph (implies fast_loop; deterministic schedulers)",
    "cudnn_benchmark": "let cuDNN time its convolution algorithms once per shape and keep the fastest",
    "vae_bf16": "decode latents in bf16 (SDXL otherwise upcasts its fp16 VAE to fp32)",
    "fp8": "float8 dynamic quantization of the UNet's linear layers (torchao; Hopper/Ada GPUs)",
    "compile_regions": "compile the UNet block by block (transformer and ResNet blocks) instead of whole: half the compile, ~5% slower (SDXL)",
    "kernel_tuning": "let inductor tune each kernel it generates (coordinate descent): compiles of many minutes (SD 1.5 and SDXL did not finish in 5-10 min on H100/H200), gain unmeasured",
    "fast": "the fastest known set for CUDA: fuse_qkv, channels_last, compile=unet+vae, cuda_graph, vae_bf16",
}

#: What `fast` expands to; each element stays switchable (the ablation suite removes one at a time).
#: cudnn_benchmark is left out: no measurable gain once the loop is graphed (H200), and its algorithm
#: choice can differ from process to process. fp8 is left out: on SDXL (H100) it moved the final latents
#: 3.4e-2 from eager fp16 (the limit is 2e-2) and saved no time. compile_regions is left out: it
#: halves the SDXL compile (warm start 10 s instead of 22 s) but costs 5% per image on SDXL and 18% on
#: SD 1.5 (H100); kernel_tuning did not finish compiling SD 1.5 in ~330 s (docs/benchmarks.md).
FAST_PRESET = ("fuse_qkv", "channels_last", "compile=unet+vae", "cuda_graph", "vae_bf16")


#: On/off switches canonically listed after the compile and loop switches (:meth:`Optimizations.switches`).
_LATE_FLAGS = ("cudnn_benchmark", "vae_bf16", "fp8", "kernel_tuning", "compile_regions")
#: Every plain on/off switch: its name is its field.
_FLAGS = ("vae_slicing", "vae_tiling", "channels_last", "fuse_qkv", "fast_loop", *_LATE_FLAGS)

#: Switches that only change how torch.compile works (refused without compile).
COMPILE_ONLY = ("kernel_tuning", "compile_regions")


def expand_fast(switches: Iterable[str]) -> list[str]:
    """``switches`` with ``fast`` replaced by its elements (:data:`FAST_PRESET`), so one can be removed."""
    return [token for switch in switches for token in (FAST_PRESET if switch == "fast" else (switch,))]


def uncompiled(switches: Iterable[str]) -> list[str]:
    """``switches`` less everything that compiles or only shapes a compile (``compile``,
    ``compile=...``, ``compile_mode=...``, :data:`COMPILE_ONLY`; ``fast`` is expanded first): the
    eager cell of a suite that compares compiled with eager, built from the user's switches."""
    return [t for t in expand_fast(switches) if t.partition("=")[0] not in ("compile", "compile_mode", *COMPILE_ONLY)]


ATTENTION_SWITCHES = ("sdpa", "eager_attention", "xformers", "attention_slicing")


def yield_to(switches: Iterable[str], cell: Optimizations) -> tuple[list[str], list[str]]:
    """``switches`` (``fast`` expanded) less what the switches of ``cell`` exclude, and what was
    dropped; how a suite measures a memory setting on top of the user's switches instead of failing.

    - Any CPU offload leaves no room for ``cuda_graph`` (a graph needs every weight resident);
      diffprof's own loop (``fast_loop``) goes too, and ``vae_bf16`` with it (only that loop reads
      it): offload cells run the pipeline's own loop, the one measured with offload on GPUs.
      ``fuse_qkv`` goes as well: offloaded, diffusers keeps the unfused weights beside the fused
      ones, and SDXL with model offload peaked 1.21 GiB higher with it at the same speed (H100,
      3.447 s against 3.435 s with compile; ``session5/8-h100-offload-elements-sdxl.txt``): an
      offload cell is there to show the lowest peak. Sequential offload also excludes compiling
      (its per-layer hooks move weights on every call).
    - An attention other than SDPA (slicing, xformers, eager) excludes ``fuse_qkv``, whose fused
      processors are SDPA ones, and replaces the user's own attention switch."""
    switches = list(switches)
    expanded = expand_fast(switches)
    keep = expanded
    if cell.offload == "sequential":
        keep = uncompiled(keep)
    if cell.offload != "none":
        keep = [s for s in keep if s not in ("cuda_graph", "fast_loop", "vae_bf16", "fuse_qkv")]
    if cell.attention != "sdpa":
        keep = [s for s in keep if s != "fuse_qkv" and s not in ATTENTION_SWITCHES]
    dropped = [s for s in expanded if s not in keep]
    return (list(dict.fromkeys(keep)), dropped) if dropped else (switches, [])


def label_switches(label: str) -> list[str]:
    """The switch names of an :attr:`Optimizations.label` or a ``+``-joined combination (its inverse):
    ``none`` -> ``[]``; ``compile=unet+vae`` stays one switch although ``+`` also joins switches."""
    if label == "none":
        return []
    out: list[str] = []
    for token in label.split("+"):
        if out and out[-1].startswith("compile=") and token in COMPILABLE:
            out[-1] += f"+{token}"
        else:
            out.append(token)
    return out


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto``/``half`` -> the concrete precision for ``device``; others are checked and returned."""
    if precision in DEVICE_PRECISIONS:
        cuda, cpu = DEVICE_PRECISIONS[precision]
        return cuda if device.type == "cuda" else cpu  # type: ignore[return-value]
    return check_precision(precision)


def check_precision(precision: str) -> Precision:
    precision = PRECISION_ALIASES.get(precision, precision)
    if precision not in DTYPES:
        raise unknown_choice("precision", precision, DTYPES)
    return precision  # type: ignore[return-value]


@dataclass(frozen=True)
class Optimizations:
    """A validated set of switches. Build it with :meth:`parse` from the names users type."""

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
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ parse
    @classmethod
    def parse(cls, switches: str | Iterable[str] | None) -> Optimizations:
        """``"vae_slicing,compile=unet+vae,compile_mode=max-autotune"`` -> Optimizations."""
        if switches is None:
            return cls()
        if isinstance(switches, str):
            switches = [switches]
        tokens = [t.strip() for s in switches for t in s.replace(" ", ",").split(",") if t.strip()]
        expanded: list[str] = []
        for token in tokens:
            expanded += list(FAST_PRESET) if token == "fast" else [token]
        tokens = expanded
        opts = cls()
        seen_attention: list[str] = []
        seen_offload: list[str] = []
        for token in tokens:
            name, _, value = token.partition("=")
            if name == "none":
                continue
            if name in ATTENTION_SWITCHES:
                seen_attention.append(name)
                attention = {"sdpa": "sdpa", "eager_attention": "eager", "xformers": "xformers", "attention_slicing": "slicing"}[name]
                opts = replace(opts, attention=attention)  # type: ignore[arg-type]
            elif name in _FLAGS:
                opts = replace(opts, **{name: True})
            elif name == "cuda_graph":
                opts = replace(opts, cuda_graph=True, fast_loop=True)
            elif name in ("model_cpu_offload", "sequential_cpu_offload"):
                seen_offload.append(name)
                opts = replace(opts, offload="model" if name == "model_cpu_offload" else "sequential")
            elif name == "compile":
                modules = tuple(value.split("+")) if value else ("unet",)
                for m in modules:
                    if m not in COMPILABLE:
                        raise unknown_choice("module to compile", m, COMPILABLE)
                opts = replace(opts, compile=modules)
            elif name == "compile_mode":
                if value not in COMPILE_MODES:
                    raise unknown_choice("compile mode", value, COMPILE_MODES)
                opts = replace(opts, compile_mode=value, compile=opts.compile or ("unet",))
            else:
                raise unknown_choice("optimization", name, [*SWITCHES, "compile_mode"])
        if len(seen_attention) > 1:
            raise ConfigError(f"choose one attention implementation, not {' and '.join(seen_attention)}")
        if len(seen_offload) > 1:
            raise ConfigError(
                "model_cpu_offload and sequential_cpu_offload exclude each other",
                "sequential offload already keeps every layer on the CPU; pick one",
            )
        return opts

    # --------------------------------------------------------------- describe
    def switches(self) -> list[str]:
        """Canonical switch names (the inverse of :meth:`parse`)."""
        out: list[str] = []
        if self.attention != "sdpa":
            out.append({"eager": "eager_attention", "xformers": "xformers", "slicing": "attention_slicing"}[self.attention])
        out += [n for n in ("vae_slicing", "vae_tiling") if getattr(self, n)]
        if self.offload != "none":
            out.append(f"{self.offload}_cpu_offload")
        out += [n for n in ("channels_last", "fuse_qkv") if getattr(self, n)]
        if self.compile:
            out.append("compile" if self.compile == ("unet",) else f"compile={'+'.join(self.compile)}")
            if self.compile_mode != "default":
                out.append(f"compile_mode={self.compile_mode}")
        if self.cuda_graph:
            out.append("cuda_graph")
        elif self.fast_loop:
            out.append("fast_loop")
        out += [n for n in _LATE_FLAGS if getattr(self, n)]
        if set(FAST_PRESET) <= set(out):
            out = ["fast"] + [o for o in out if o not in FAST_PRESET]
        return out

    @property
    def label(self) -> str:
        """``vae_slicing+vae_tiling`` or ``none``: the memory suite's axis value."""
        return "+".join(self.switches()) or "none"

    # --------------------------------------------------------------- validate
    def validate(self, device: torch.device, precision: str) -> None:
        """Raise a :class:`ConfigError` that says why for combinations that cannot work."""
        precision = check_precision(precision)
        cuda = device.type == "cuda"
        if precision == "fp16" and not cuda:
            raise ConfigError(
                f"fp16 on {device.type} is not supported: CPU kernels for half precision are missing or very slow",
                "use --precision bf16 or fp32 on the CPU, fp16 on a CUDA GPU",
            )
        if self.offload != "none" and not cuda:
            raise ConfigError(
                f"{self.offload}_cpu_offload needs a CUDA device: it moves weights between CPU and GPU memory",
                "drop the offload switch when running on the CPU",
            )
        if self.attention == "xformers":
            if importlib.util.find_spec("xformers") is None:
                raise ConfigError("xformers attention needs the xformers package, which is not installed", "pip install xformers, or use sdpa")
            if not cuda:
                raise ConfigError("xformers attention runs on CUDA only", "use sdpa on the CPU")
        if self.fuse_qkv and self.attention != "sdpa":
            raise ConfigError(f"fuse_qkv needs sdpa attention, not {self.attention}", "drop fuse_qkv or the attention switch")
        if self.compile and self.offload == "sequential":
            raise ConfigError(
                "compile cannot be combined with sequential_cpu_offload: its per-layer hooks move weights on every call",
                "use model_cpu_offload with compile, or drop compile",
            )
        for name in COMPILE_ONLY:
            if getattr(self, name) and not self.compile:
                raise ConfigError(f"{name} changes how torch.compile works; nothing is compiled", f"add compile (or fast), or drop {name}")
        if self.compile_mode in ("reduce-overhead",) and self.compile and not cuda:
            raise ConfigError("compile_mode=reduce-overhead uses CUDA graphs and needs a CUDA device", "use compile_mode=default on the CPU")
        if self.cuda_graph and not cuda:
            raise ConfigError(
                "cuda_graph (and the fast preset) needs a CUDA device",
                "on the CPU use fast_loop, fuse_qkv or channels_last",
            )
        if self.vae_bf16 and self.offload == "sequential":
            raise ConfigError(
                "vae_bf16 cannot be combined with sequential_cpu_offload: it casts the VAE, whose weights that offload keeps off the GPU",
                "drop vae_bf16, or use model_cpu_offload",
            )
        if self.cuda_graph and self.offload != "none":
            raise ConfigError("cuda_graph cannot be combined with CPU offload: a graph needs every weight resident on the GPU")
        if self.cuda_graph and self.compile_mode == "reduce-overhead":
            raise ConfigError(
                "cuda_graph already graphs the whole loop; compile_mode=reduce-overhead would nest graphs",
                "use compile_mode=default or max-autotune-no-cudagraphs with cuda_graph",
            )
        if self.fp8:
            if not cuda:
                raise ConfigError("fp8 needs a CUDA GPU with float8 tensor cores (Ada/Hopper)")
            if importlib.util.find_spec("torchao") is None:
                raise ConfigError("fp8 needs the torchao package, which is not installed", "pip install torchao")
            if torch.cuda.get_device_capability(device) < (8, 9):
                raise ConfigError("fp8 needs compute capability 8.9 or newer (Ada, Hopper)", "drop fp8 on this GPU")


def apply_optimizations(pipe: Any, opts: Optimizations, device: torch.device) -> None:
    """Apply ``opts`` to a loaded pipeline and place it on ``device`` (or install offload hooks).

    Phases, in the order that works: attention processors, QKV fusion, memory format, VAE modes,
    placement (offload hooks or ``.to``), compile last so it sees the final modules; under model
    offload compile comes before the hooks, so they stay outside the compiled code.
    """
    # 0. Global backend settings
    if opts.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    # 1. Attention implementation
    if opts.attention == "eager":
        from diffusers.models.attention_processor import AttnProcessor

        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None and hasattr(module, "set_attn_processor"):
                module.set_attn_processor(AttnProcessor())
    elif opts.attention == "slicing":
        pipe.enable_attention_slicing("auto")
    elif opts.attention == "xformers":
        pipe.enable_xformers_memory_efficient_attention()
    # 2. Fused projections (replaces processors with fused SDPA ones)
    if opts.fuse_qkv:
        pipe.fuse_qkv_projections()
    # 3. Memory format
    if opts.channels_last:
        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)
    # 4. VAE modes
    if opts.vae_slicing:
        pipe.vae.enable_slicing()
    if opts.vae_tiling:
        pipe.vae.enable_tiling()
    # 5.-7. Placement, fp8, compile. Under model offload, compile wraps the models *before* the
    #    offload hooks go on: wrapped after, the hook's pre_forward (which accelerate marks
    #    torch.compiler.disable) sits inside the compiled call and the UNet ran eagerly (SD 1.5,
    #    H200: 57 instead of 179 inductor kernels a call, 39 ms a step against 28 ms for plain eager
    #    offload; benchmarks/gpu_offload_compile.py). Compiling is lazy, so placement after it is fine.
    if opts.offload == "model":
        _quantize_fp8(pipe, opts)
        _compile_modules(pipe, opts)
        pipe.enable_model_cpu_offload(device=device)
        return
    if opts.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
        if opts.fuse_qkv:  # after placement: moving a module copies each parameter, views included
            share_fused_weights(pipe)
    _quantize_fp8(pipe, opts)
    _compile_modules(pipe, opts)


def _fused_attentions(pipe: Any) -> Iterator[tuple[Any, str, Any, list[Any]]]:
    """(attention module, fused layer's name, fused layer, the unfused layers it holds, in row order)
    for every attention of the UNet and VAE that ``fuse_qkv_projections`` fused."""
    for name in ("unet", "vae"):
        model = getattr(pipe, name, None)
        for module in model.modules() if model is not None else ():
            if not getattr(module, "fused_projections", False):
                continue
            fused_name, parts = ("to_kv", [module.to_k, module.to_v]) if module.is_cross_attention else ("to_qkv", [module.to_q, module.to_k, module.to_v])
            fused = getattr(module, fused_name, None)
            if fused is not None:
                yield module, fused_name, fused, parts


def share_fused_weights(pipe: Any) -> None:
    """Make the unfused Q/K/V projection weights views of the fused ones.

    diffusers' ``fuse_qkv_projections`` copies Q, K and V into one new layer and keeps the three
    originals (so ``unfuse_qkv_projections`` can switch back): SDXL's UNet then holds ~0.6 B
    parameters twice, 1.25 GiB of fp16 (H200 ablation, docs/benchmarks.md). The fused layer's rows
    are exactly the originals, so the originals become row slices of it: the same values, no second
    copy, and unfusing still works. Only for models that stay where they are: offload hooks move
    (copy) every parameter on each call, which would undo the sharing. Saving needs
    :func:`saveable_weights` (safetensors refuses tensors that share memory)."""
    for _, _, fused, parts in _fused_attentions(pipe):
        start = 0
        for part in parts:
            rows = part.out_features
            for attr in ("weight", "bias"):
                own, whole = getattr(part, attr), getattr(fused, attr)
                if own is not None and whole is not None:
                    setattr(part, attr, torch.nn.Parameter(whole.detach()[start:start + rows], requires_grad=own.requires_grad))
            start += rows


@contextmanager
def saveable_weights(pipe: Any) -> Iterator[None]:
    """Inside the block, the pipeline's models look as diffusers saves and loads them: the fused
    Q/K/V layers detached and the unfused weights tensors of their own. ``save_pretrained`` of a
    fused, weight-sharing pipeline otherwise fails (safetensors: "Some tensors share memory"), and
    a plain model has no ``to_qkv``/``to_kv`` to load. Everything is put back on exit, sharing
    included; the copies live only while the block runs."""
    undo: list[Callable[[], None]] = []
    try:
        for module, fused_name, fused, parts in list(_fused_attentions(pipe)):
            delattr(module, fused_name)
            undo.append(lambda m=module, n=fused_name, f=fused: setattr(m, n, f))
            for part in parts:
                for attr in ("weight", "bias"):
                    own = getattr(part, attr)
                    if own is not None:
                        setattr(part, attr, torch.nn.Parameter(own.detach().clone(), requires_grad=own.requires_grad))
                        undo.append(lambda p=part, a=attr, o=own: setattr(p, a, o))
        yield
    finally:
        for restore in reversed(undo):
            restore()


def _quantize_fp8(pipe: Any, opts: Optimizations) -> None:
    """fp8 weights/activations for the UNet's linear layers (before compile, which fuses the casts)."""
    if opts.fp8:
        from torchao.quantization import quantize_

        quantize_(pipe.unet, fp8_config(pipe.unet.dtype), filter_fn=_fp8_worthy)


def _compile_modules(pipe: Any, opts: Optimizations) -> None:
    """Compile what ``opts.compile`` names (wrapping modules keeps diffusers' own module attributes
    intact). Inductor options go with each compile rather than into torch's global config, so they
    cannot leak into another pipeline's compile in the same process.

    compile_regions: a model that names its repeated blocks (the UNet's transformer blocks) gets
    those compiled in place through diffusers' public compile_repeated_blocks; Dynamo then traces one
    block per shape instead of the whole model, and inside diffprof's whole-loop CUDA graph the parts
    left eager cost no launch overhead. Static shapes: one graph per resolution."""
    options = compile_options(opts) if opts.compile else {}
    for name in opts.compile:
        if name == "vae":
            pipe.vae.decoder = torch.compile(pipe.vae.decoder, options=options)
            continue
        module = getattr(pipe, name, None)
        if module is None:
            raise ConfigError(f"this pipeline has no {name} to compile", f"compile one of: {', '.join(COMPILABLE)}")
        if opts.compile_regions and getattr(module, "_repeated_blocks", None):
            module.compile_repeated_blocks(options=options, dynamic=False)
            compile_conv_blocks(module, options)
        else:
            setattr(pipe, name, torch.compile(module, options=options))


#: Convolution blocks compiled one by one under compile_regions, beside diffusers' repeated
#: (transformer) blocks: left eager, their GroupNorm+SiLU passes over NHWC maps cost the SDXL loop
#: 25% (H200, docs/benchmarks.md).
CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")


def compile_conv_blocks(model: torch.nn.Module, options: dict[str, Any], backend: Any = "inductor") -> int:
    """Compile every :data:`CONV_BLOCKS` instance of ``model`` in place (``nn.Module.compile``,
    static shapes); returns how many.

    All instances of a class share one code object, and so one Dynamo cache, counted for the whole
    process: an SDXL UNet alone has 12 distinct ResNet shapes, past Dynamo's default of 8 graphs per
    code object, after which the rest would silently run eager (H100: 4 of SDXL's 12 did). The
    limit is raised to 8 graphs per instance, Dynamo's own allowance per function (other
    resolutions and models in the process included): per call where ``torch.compile`` takes
    ``recompile_limit`` (torch >= 2.12), else in Dynamo's global config (raised, never lowered).
    ``backend``: another Dynamo backend (``benchmarks/trace_cost.py`` times the trace alone)."""
    blocks = [m for m in model.modules() if type(m).__name__ in CONV_BLOCKS]
    import torch._dynamo.config as dynamo_config

    wanted = max(dynamo_config.recompile_limit, 8 * len(blocks))
    limit: dict[str, Any] = {}
    if "recompile_limit" in inspect.signature(torch.compile).parameters:
        limit["recompile_limit"] = wanted
    else:
        dynamo_config.recompile_limit = wanted
    for block in blocks:
        block.compile(backend=backend, dynamic=False, **({"options": options} if options else {}), **limit)
    return len(blocks)


def compile_options(opts: Optimizations) -> dict[str, Any]:
    """Inductor options for ``opts.compile_mode`` plus diffprof's tuning: what ``mode=`` would set
    (``torch.compile`` takes a mode or options, not both), 1x1 convolutions as GEMMs (better kernels
    for the UNet's projections) and, with ``kernel_tuning``, coordinate-descent tuning of every
    generated Triton kernel."""
    from torch._inductor import list_mode_options

    options: dict[str, Any] = {**list_mode_options(opts.compile_mode), "conv_1x1_as_mm": True}
    if opts.kernel_tuning:
        options.update(coordinate_descent_tuning=True, coordinate_descent_check_all_directions=True)
    return options


def fp8_config(dtype: torch.dtype) -> Any:
    """torchao's float8 dynamic-activation config for a UNet of ``dtype``.

    Per-row scales are finer, but torchao takes them from bf16 weights only; fp16 gets per-tensor.
    ``set_inductor_config=False``: by default torchao switches on inductor's coordinate-descent
    tuning *globally* (for every later compile in the process), which made the SDXL compile run for
    more than 8 minutes on an H200 instead of ~1.5 (``benchmarks/gpu_fp8_probe.py`` stack dumps).
    """
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor

    granularity = PerRow() if dtype == torch.bfloat16 else PerTensor()
    return Float8DynamicActivationFloat8WeightConfig(granularity=granularity, set_inductor_config=False)


def _fp8_worthy(module: torch.nn.Module, name: str) -> bool:
    """Quantize only linear layers large enough for float8 GEMMs to win over their scaling cost."""
    return isinstance(module, torch.nn.Linear) and module.in_features >= 512 and module.out_features >= 512 and module.in_features % 16 == 0 and module.out_features % 16 == 0
