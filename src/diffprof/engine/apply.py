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

from diffprof.engine.anatomy import vae_of
from diffprof.engine.process_settings import CUDNN_BENCHMARK, RECOMPILE_LIMIT
from diffprof.engine.switch import Applying
from diffprof.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from diffprof.engine.switches import Optimizations

#: The pipeline modules ``compile=...`` can wrap (``vae``: its decoder). ``unet`` is the denoiser,
#: whichever it is (the name predates diffusion transformers, and stored labels keep it: ``compile``
#: and ``fast`` compile a FLUX transformer too); ``transformer`` names a transformer only.
COMPILABLE = ("unet", "transformer", "vae", "text_encoder")
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


def fuse_qkv(ctx: Applying) -> None:
    """Fused Q/K/V projections: SD's pipeline method for the UNet and VAE; for a diffusion transformer
    its own ``fuse_qkv_projections`` (FLUX, SD3: image and text streams' projections alike; SD3 then
    gets :class:`~diffprof.engine.attention.FusedJointAttention`) and the AutoencoderKL's with
    diffusers' fused processor, as the pipeline method does for SD."""
    pipe = ctx.pipe
    if getattr(pipe, "unet", None) is not None:
        pipe.fuse_qkv_projections()
        return
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    model = getattr(pipe, "transformer", None)
    if not hasattr(model, "fuse_qkv_projections"):
        raise ConfigError(f"diffusers cannot fuse the QKV projections of {type(model).__name__}", "drop fuse_qkv for this model")
    model.fuse_qkv_projections()
    if type(model).__name__ == "SD3Transformer2DModel":  # diffusers' fused SD3 processor drops SD 3.5's q/k norms
        from diffprof.engine.attention import install_on_sd3

        install_on_sd3(model)
    vae = getattr(pipe, "vae", None)
    if type(vae).__name__ == "AutoencoderKL":
        vae.fuse_qkv_projections()
        vae.set_attn_processor(FusedAttnProcessor2_0())


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


def vae_switch(kind: str) -> Callable[[Applying], None]:
    """``vae_slicing`` / ``vae_tiling``: ``enable_<kind>`` on the pipeline's autoencoder, whatever its
    attribute (Kandinsky's MoVQ is ``movq``); refused when it has none."""

    def run(ctx: Applying) -> None:
        vae = vae_of(ctx.pipe)
        enable = getattr(vae, f"enable_{kind}", None)
        what = type(vae).__name__ if vae is not None else f"{type(ctx.pipe).__name__} (no autoencoder found)"
        try:
            if not callable(enable):
                raise NotImplementedError
            enable()
        except NotImplementedError:  # diffusers' AutoencoderMixin says so for a VQModel
            raise ConfigError(f"{what} has no {kind}", f"drop vae_{kind} for this model") from None

    return run


def compile_modules(ctx: Applying) -> None:
    """Compile what ``opts.compile`` names (wrapping modules keeps diffusers' own module attributes
    intact). Inductor options go with each compile rather than into torch's global config, so they
    cannot leak into another pipeline's compile in the same process.

    compile_regions: a model that names its repeated blocks (the UNet's transformer blocks, FLUX's
    double- and single-stream blocks) gets those compiled in place through diffusers' public
    compile_repeated_blocks; a transformer that names none (SD3 in diffusers 0.42) gets the blocks of
    its block lists compiled the same way (``nn.Module.compile`` on each). Dynamo then traces one
    block per shape instead of the whole model, and inside diffprof's whole-loop CUDA graph the parts
    left eager cost no launch overhead. Static shapes: one graph per resolution."""
    import torch

    pipe, opts = ctx.pipe, ctx.opts
    options = compile_options(opts)
    for name in opts.compile:
        if name == "vae":
            vae = vae_of(pipe)  # Kandinsky's MoVQ is `movq`
            if not isinstance(getattr(vae, "decoder", None), torch.nn.Module):
                raise ConfigError(f"{type(pipe).__name__} has no VAE decoder to compile", "drop vae from --optimize compile=...")
            vae.decoder = torch.compile(vae.decoder, options=options)
            continue
        if name == "unet" and getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is not None:
            name = "transformer"  # `unet` means the denoiser
        module = getattr(pipe, name, None)
        if module is None:
            raise ConfigError(f"this pipeline has no {name} to compile", f"compile one of: {', '.join(COMPILABLE)}")
        if opts.compile_regions and getattr(module, "_repeated_blocks", None):
            module.compile_repeated_blocks(options=options, dynamic=False)
            compile_conv_blocks(module, options, settings=ctx.settings)
        elif opts.compile_regions and (blocks := block_lists(module)):
            for block in blocks:
                block.compile(options=options, dynamic=False)
        else:
            setattr(pipe, name, torch.compile(module, options=options))


# ------------------------------------------------------------------------ helpers
def block_lists(model: Any) -> list[Any]:
    """The blocks of a model's block lists (its direct ``nn.ModuleList`` children of two or more
    modules of one class: SD3's ``transformer_blocks``), for models that name no repeated blocks."""
    import torch

    found: list[Any] = []
    for child in model.children() if isinstance(model, torch.nn.Module) else ():
        if isinstance(child, torch.nn.ModuleList) and len(child) > 1 and len({type(m) for m in child}) == 1:
            found += list(child)
    return found


def _fused_attentions(pipe: Any) -> Iterator[tuple[Any, str, Any, list[Any]]]:
    """(attention module, fused layer's name, fused layer, the unfused layers it holds, in row order)
    for every attention of the denoiser and VAE that ``fuse_qkv_projections`` fused: the image stream's
    ``to_qkv`` (``to_kv`` for cross-attention) and, in joint attention (SD3, FLUX), the text stream's
    ``to_added_qkv``."""
    import torch

    for name in ("unet", "transformer", "vae"):
        model = getattr(pipe, name, None)
        for module in model.modules() if isinstance(model, torch.nn.Module) else ():
            if not getattr(module, "fused_projections", False):
                continue
            cross = getattr(module, "is_cross_attention", False)
            fused_name, parts = ("to_kv", [module.to_k, module.to_v]) if cross else ("to_qkv", [module.to_q, module.to_k, module.to_v])
            fused = getattr(module, fused_name, None)
            if fused is not None:
                yield module, fused_name, fused, parts
            added = getattr(module, "to_added_qkv", None)
            if added is not None:
                yield module, "to_added_qkv", added, [module.add_q_proj, module.add_k_proj, module.add_v_proj]


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
