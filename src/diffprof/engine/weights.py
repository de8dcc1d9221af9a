"""Where a pipeline's weights live and how they are stored: the registry's memory steps for big models.

Each function is one switch's step (:mod:`diffprof.engine.switches`), through diffusers' and torchao's
public APIs only:

* ``group_offload``: diffusers' group offloading on every component, with CUDA streams so the next
  group is copied while the current one computes: the denoiser and the VAE through
  ``ModelMixin.enable_group_offload`` at the level asked (block: one of the denoiser's blocks a group;
  leaf: each layer), the text encoders through ``diffusers.hooks.apply_group_offloading`` at leaf
  level either way (a transformers encoder has no top-level block list, so at block level it would be
  one group: FLUX's whole 9.5 GB T5 on the GPU at once);
* ``t5_offload``: group offload of the T5 encoder alone (leaf level, streams); the rest stays resident,
  so the denoising loop can still be compiled and graphed;
* ``drop_t5``: SD3 without its T5 (``register_modules(text_encoder_3=None, ...)``): the pipeline feeds
  zeros in its place, as diffusers documents, and its weights are never placed;
* ``layerwise_casting``: ``ModelMixin.enable_layerwise_casting`` on the denoiser: weights stored in
  float8 (e4m3), each layer cast to the compute precision as it runs;
* ``int8_weights`` / ``fp8``: torchao ``quantize_`` of the denoiser's linear layers (int8 weight-only;
  float8 dynamic activations and weights).

Nothing here is imported before a pipeline is changed: each step imports what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diffprof.engine.switch import Applying
from diffprof.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Class-name prefixes of the T5 encoders diffusers pipelines use (transformers' T5 and UMT5).
T5_CLASSES = ("T5EncoderModel", "UMT5EncoderModel")


def denoiser_name(pipe: Any) -> str:
    """``unet`` or ``transformer``: the component that runs every step."""
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def denoiser_of(pipe: Any) -> Any:
    return getattr(pipe, denoiser_name(pipe))


def t5_component(pipe: Any) -> str:
    """The pipeline attribute holding its T5 text encoder; a :class:`ConfigError` when it has none."""
    for name, module in (getattr(pipe, "components", None) or {}).items():
        if type(module).__name__ in T5_CLASSES:
            return name
    raise ConfigError(f"{type(pipe).__name__} has no T5 text encoder to offload or drop", "drop t5_offload / drop_t5 for this model")


def _host() -> torch.device:
    import torch

    return torch.device("cpu")


# ------------------------------------------------------------------------------ offloading
def group_offload(ctx: Applying) -> None:
    """Every component offloaded in groups, weights in pinned host memory, the copy of the next group
    overlapping the current one's compute on a CUDA stream (see the module docstring for the levels)."""
    import torch
    from diffusers.hooks import apply_group_offloading

    level = ctx.opts.group_offload
    common: dict[str, Any] = {"onload_device": ctx.device, "offload_device": _host(), "use_stream": True}
    for name, module in ctx.pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        if name.startswith("text_encoder") or not hasattr(module, "enable_group_offload"):
            apply_group_offloading(module, offload_type="leaf_level", **common)
        elif level == "block":
            module.enable_group_offload(offload_type="block_level", num_blocks_per_group=1, **common)
        else:
            module.enable_group_offload(offload_type="leaf_level", **common)


def t5_offload(ctx: Applying) -> None:
    """The T5 encoder stays in host memory, streamed to the GPU layer by layer while it runs (leaf-level
    group offload with a CUDA stream); every other component is placed on the device as usual."""
    import torch
    from diffusers.hooks import apply_group_offloading

    t5 = t5_component(ctx.pipe)
    for name, module in ctx.pipe.components.items():
        if isinstance(module, torch.nn.Module) and name != t5:
            module.to(ctx.device)
    apply_group_offloading(getattr(ctx.pipe, t5), onload_device=ctx.device, offload_device=_host(), offload_type="leaf_level", use_stream=True)


def drop_t5(ctx: Applying) -> None:
    """SD3 without its T5-XXL (4.7 B parameters): ``encode_prompt`` then feeds zeros of T5's sequence
    length in its place (diffusers 0.42), so the transformer's work is unchanged."""
    name = t5_component(ctx.pipe)
    tokenizer = name.replace("text_encoder", "tokenizer")
    ctx.pipe.register_modules(**{name: None, tokenizer: None})


# ---------------------------------------------------------------------------- storage
def layerwise_casting(ctx: Applying) -> None:
    """The denoiser's weights stored as float8 e4m3 and cast layer by layer to the precision it
    computes in (diffusers' default skips: patch and position embeddings, norms, input and output
    projections stay as they are). With fused QKV the unfused projections become views of the cast
    fused ones again, so casting does not leave a second copy behind."""
    import torch

    model = denoiser_of(ctx.pipe)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=model.dtype)
    if ctx.opts.fuse_qkv and ctx.opts.offload == "none":
        from diffprof.engine.apply import share_fused_weights

        share_fused_weights(ctx.pipe)


def quantize_int8(ctx: Applying) -> None:
    """int8 weight-only quantization of the denoiser's linear layers (torchao): half the bf16 weight
    memory; activations stay in the compute precision."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(denoiser_of(ctx.pipe), Int8WeightOnlyConfig(), filter_fn=_linear)


def quantize_fp8(ctx: Applying) -> None:
    """float8 weights and dynamically scaled float8 activations for the denoiser's large linear layers
    (torchao), before compile, which fuses the scaling into the neighbouring kernels."""
    from torchao.quantization import quantize_

    model = denoiser_of(ctx.pipe)
    quantize_(model, fp8_config(model.dtype), filter_fn=fp8_worthy)


def fp8_config(dtype: torch.dtype) -> Any:
    """torchao's float8 dynamic-activation config for a denoiser of ``dtype``.

    Per-row scales are finer, but torchao takes them from bf16 weights only; fp16 gets per-tensor.
    ``set_inductor_config=False``: by default torchao switches on inductor's coordinate-descent
    tuning *globally* (for every later compile in the process), which made the SDXL compile run for
    more than 8 minutes on an H200 instead of ~1.5 (``benchmarks/gpu_fp8_probe.py`` stack dumps).
    """
    import torch
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor

    granularity = PerRow() if dtype == torch.bfloat16 else PerTensor()
    return Float8DynamicActivationFloat8WeightConfig(granularity=granularity, set_inductor_config=False)


def _linear(module: torch.nn.Module, name: str) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear)


def fp8_worthy(module: torch.nn.Module, name: str) -> bool:
    """Quantize only linear layers large enough for float8 GEMMs to win over their scaling cost."""
    import torch

    return isinstance(module, torch.nn.Linear) and module.in_features >= 512 and module.out_features >= 512 and module.in_features % 16 == 0 and module.out_features % 16 == 0
