"""Applying a switch set to a loaded pipeline: the steps the registry's entries name, in phase order.

:func:`apply_optimizations` runs :meth:`Optimizations.steps` (each switch's steps, sorted by
:class:`~diffprof.engine.switch.Phase`) and returns the ``ExitStack`` of the process-global settings
they entered, which the caller closes when the pipeline goes (``Engine.close``). Importing this
module does not import torch: each step imports what it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from diffprof.engine.process_settings import CUDNN_BENCHMARK, RECOMPILE_LIMIT
from diffprof.engine.switch import Applying
from diffprof.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from diffprof.engine.switches import Optimizations

#: The pipeline modules ``compile=...`` can wrap (``vae``: its decoder).
COMPILABLE = ("unet", "vae", "text_encoder")
#: Convolution blocks compiled one by one under compile_regions, beside diffusers' repeated
#: (transformer) blocks: left eager, their GroupNorm+SiLU passes over NHWC maps cost the SDXL loop
#: 25% (H200, docs/benchmarks.md).
CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")


def apply_optimizations(pipe: Any, opts: Optimizations, device: torch.device) -> ExitStack:
    """Apply ``opts`` to a loaded pipeline and place it on ``device`` (or install offload hooks).

    Returns the stack of process-global settings the switches entered (``cudnn_benchmark``, a raised
    Dynamo recompile limit); closing it restores them. Keep it as long as the pipeline is used. If a
    step fails, what was entered is restored before the error propagates."""
    with ExitStack() as settings:
        ctx = Applying(pipe, opts, device, settings)
        for step in opts.steps():
            step.run(ctx)
        return settings.pop_all()


# ----------------------------------------------------------------- the registry's steps
def hold_cudnn_benchmark(ctx: Applying) -> None:
    ctx.settings.enter_context(CUDNN_BENCHMARK.held(True))


def eager_attention(ctx: Applying) -> None:
    """Classic attention processors on the UNet and VAE."""
    from diffusers.models.attention_processor import AttnProcessor

    for name in ("unet", "vae"):
        module = getattr(ctx.pipe, name, None)
        if module is not None and hasattr(module, "set_attn_processor"):
            module.set_attn_processor(AttnProcessor())


def channels_last(ctx: Applying) -> None:
    import torch

    for name in ("unet", "vae"):
        module = getattr(ctx.pipe, name, None)
        if module is not None:
            module.to(memory_format=torch.channels_last)


def place_on_device(ctx: Applying) -> None:
    """The placement when no switch places the pipeline itself (no offload)."""
    ctx.pipe.to(ctx.device)


def share_fused_weights_if_resident(ctx: Applying) -> None:
    """After placement (moving a module copies each parameter, views included), and only for models
    that stay put: offload hooks copy every parameter on each call, which would undo the sharing."""
    if ctx.opts.offload == "none":
        share_fused_weights(ctx.pipe)


def quantize_fp8(ctx: Applying) -> None:
    """fp8 weights/activations for the UNet's linear layers (before compile, which fuses the casts)."""
    from torchao.quantization import quantize_

    quantize_(ctx.pipe.unet, fp8_config(ctx.pipe.unet.dtype), filter_fn=_fp8_worthy)


def compile_modules(ctx: Applying) -> None:
    """Compile what ``opts.compile`` names (wrapping modules keeps diffusers' own module attributes
    intact). Inductor options go with each compile rather than into torch's global config, so they
    cannot leak into another pipeline's compile in the same process.

    compile_regions: a model that names its repeated blocks (the UNet's transformer blocks) gets
    those compiled in place through diffusers' public compile_repeated_blocks; Dynamo then traces one
    block per shape instead of the whole model, and inside diffprof's whole-loop CUDA graph the parts
    left eager cost no launch overhead. Static shapes: one graph per resolution."""
    import torch

    pipe, opts = ctx.pipe, ctx.opts
    options = compile_options(opts)
    for name in opts.compile:
        if name == "vae":
            pipe.vae.decoder = torch.compile(pipe.vae.decoder, options=options)
            continue
        module = getattr(pipe, name, None)
        if module is None:
            raise ConfigError(f"this pipeline has no {name} to compile", f"compile one of: {', '.join(COMPILABLE)}")
        if opts.compile_regions and getattr(module, "_repeated_blocks", None):
            module.compile_repeated_blocks(options=options, dynamic=False)
            compile_conv_blocks(module, options, settings=ctx.settings)
        else:
            setattr(pipe, name, torch.compile(module, options=options))


# ------------------------------------------------------------------------ helpers
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
    import torch

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
    import torch

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


def compile_conv_blocks(model: torch.nn.Module, options: dict[str, Any], backend: Any = "inductor", *, settings: ExitStack | None = None) -> int:
    """Compile every :data:`CONV_BLOCKS` instance of ``model`` in place (``nn.Module.compile``,
    static shapes); returns how many.

    All instances of a class share one code object, and so one Dynamo cache, counted for the whole
    process: an SDXL UNet alone has 12 distinct ResNet shapes, past Dynamo's default of 8 graphs per
    code object, after which the rest would silently run eager (H100: 4 of SDXL's 12 did). The
    limit is raised to 8 graphs per instance, Dynamo's own allowance per function (other
    resolutions and models in the process included): per call where ``torch.compile`` takes
    ``recompile_limit`` (torch >= 2.12), else in Dynamo's global config, raised (never lowered)
    while ``settings`` is open and restored when it closes (required there).
    ``backend``: another Dynamo backend (``benchmarks/trace_cost.py`` times the trace alone)."""
    import inspect

    import torch

    blocks = [m for m in model.modules() if type(m).__name__ in CONV_BLOCKS]
    wanted = max(RECOMPILE_LIMIT.value, 8 * len(blocks))
    limit: dict[str, Any] = {}
    if "recompile_limit" in inspect.signature(torch.compile).parameters:
        limit["recompile_limit"] = wanted
    elif settings is None:
        raise TypeError("compile_conv_blocks needs settings=ExitStack() on this torch: it raises Dynamo's global recompile limit until the stack closes")
    else:
        settings.enter_context(RECOMPILE_LIMIT.held(wanted))
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
    import torch
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor

    granularity = PerRow() if dtype == torch.bfloat16 else PerTensor()
    return Float8DynamicActivationFloat8WeightConfig(granularity=granularity, set_inductor_config=False)


def _fp8_worthy(module: torch.nn.Module, name: str) -> bool:
    """Quantize only linear layers large enough for float8 GEMMs to win over their scaling cost."""
    import torch

    return isinstance(module, torch.nn.Linear) and module.in_features >= 512 and module.out_features >= 512 and module.in_features % 16 == 0 and module.out_features % 16 == 0
