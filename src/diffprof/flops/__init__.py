"""FLOPs per pipeline component, counted once per (architecture, size, batch) on the meta device.

Counting runs the real modules' forward on ``meta`` tensors under
``torch.utils.flop_counter.FlopCounterMode``: no memory, no compute, exact shapes. FLOPs are
2 x multiply-accumulates of conv/matmul/attention. CPU flash-attention has no formula in torch,
so one is supplied (otherwise attention would count 0 and SD1.5 would read ~16% low).

Two ways to get the inputs: :func:`pipeline_flops` builds them from the architecture for any size and
batch (the UNet, and the SD3, FLUX, PixArt and SANA transformers: :mod:`diffprof.flops.inputs`; what
``estimate`` needs for sizes that never ran); :func:`recorded_flops` replays the input shapes a call
actually had (:class:`~diffprof.engine.instrument.CallInputs`), for pipelines no builder covers.
Diffusion transformers count joint attention over image + text tokens as it runs: FLUX's double
blocks and single blocks attend over all of them, SD3's joint blocks too, PixArt and SANA
cross-attend to the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from diffprof.flops.inputs import UnsupportedDenoiser, denoiser_inputs, denoiser_kind, text_plan, vae_scale

__all__ = ["FlopBreakdown", "UnsupportedDenoiser", "count_flops", "pipeline_flops", "recorded_flops"]

_CACHE: dict[tuple[Any, ...], FlopBreakdown] = {}


@dataclass(frozen=True)
class FlopBreakdown:
    """FLOPs of one call's components for a given size and batch.

    ``unet_per_eval`` is one denoiser evaluation (UNet or transformer; both guidance halves when the
    family batches them); ``text_by`` splits ``text_encoder`` per encoder component.
    """

    text_encoder: int
    unet_per_eval: int
    vae_decode: int
    vae_encode: int = 0
    text_by: Mapping[str, int] | None = None

    def per_call(self, unet_evals: int, decode: bool = True, encode: bool = False) -> int:
        return self.text_encoder + unet_evals * self.unet_per_eval + (self.vae_decode if decode else 0) + (self.vae_encode if encode else 0)

    @property
    def denoiser_per_eval(self) -> int:
        return self.unet_per_eval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sdpa_cpu_formula(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict[Any, Any]:
    """CPU flash attention's formula, under the op packet (what FlopCounterMode looks ops up by; keyed
    by the ``.default`` overload it was never found, and CPU tensors counted attention as 0)."""
    mapping: dict[Any, Any] = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _sdpa_cpu_formula
    return mapping


def count_flops(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Total FLOPs of ``fn(*args, **kwargs)`` (run it on meta tensors to make this free)."""
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def _unwrap(module: Any) -> Any:
    return getattr(module, "_orig_mod", module)


def meta_copy(module: Any, *, fake: bool = False) -> Any:
    """Same architecture on the meta device, or as fake CPU tensors with ``fake`` (diffusers models via
    from_config, transformers via config)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers.initialization import no_init_weights  # transformers is loaded with any pipeline

    module = _unwrap(module)
    with FakeTensorMode() if fake else torch.device("meta"), no_init_weights():  # no init ops: the copy holds no values
        if hasattr(module, "from_config") and hasattr(module, "config") and not hasattr(module.config, "to_dict"):
            return type(module).from_config(module.config)
        return type(module)(module.config)


def _config_key(module: Any) -> str:
    module = _unwrap(module)
    cfg = module.config
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # bookkeeping, not architecture
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _denoiser_name(pipe: Any) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def pipeline_flops(pipe: Any, *, width: int, height: int, batch: int, guidance: bool, encode: bool = False,
                   sequence_lengths: Mapping[str, int] | None = None) -> FlopBreakdown:
    """FLOPs of text encoding, one denoiser evaluation and VAE decode for ``batch`` images.

    ``pipe`` is a pipeline, or anything with its modules as attributes (``text_encoder*``, ``unet`` or
    ``transformer``, ``vae``, and optionally ``tokenizer``). ``guidance`` means a guidance scale above
    1: classifier-free guidance doubles the denoiser batch and encodes the negative prompt too; FLUX's
    distilled guidance costs nothing extra. ``sequence_lengths`` are the tokens each text encoder sees
    (a preset's ``sequence_lengths``; default: the family's, 77 for CLIP).

    Raises:
        UnsupportedDenoiser: no builder knows the denoiser's inputs (use :func:`recorded_flops`).
    """
    name = _denoiser_name(pipe)
    denoiser = _unwrap(getattr(pipe, name))
    kind = denoiser_kind(denoiser)
    plan = text_plan(pipe, kind, batch, guidance, sequence_lengths)
    encoders = tuple(sorted(plan))
    key = (_config_key(denoiser), _config_key(pipe.vae), tuple(_config_key(getattr(pipe, c)) for c in encoders),
           tuple(sorted((c, tuple(rows)) for c, rows in plan.items())), width, height, batch, guidance, encode)
    if key in _CACHE:
        return _CACHE[key]
    meta = torch.device("meta")
    scale = vae_scale(pipe.vae)
    h, w = height // scale, width // scale

    text_by: dict[str, int] = {}
    for component in encoders:
        te_meta = meta_copy(getattr(pipe, component))
        text_by[component] = sum(count_flops(te_meta, torch.zeros(rows, length, dtype=torch.long, device=meta))
                                 for rows, length in plan[component])
    args, kwargs = denoiser_inputs(kind, denoiser, pipe, batch=batch, guidance=guidance, latent_h=h, latent_w=w,
                                   sequence_lengths=sequence_lengths)
    denoiser_flops = count_flops(meta_copy(denoiser), *args, **kwargs)

    vae_meta = meta_copy(pipe.vae)
    latents = torch.zeros(batch, pipe.vae.config.latent_channels, h, w, device=meta)
    decode = count_flops(lambda z: vae_meta.decode(z, return_dict=False), latents)
    enc = 0
    if encode:
        pixels = torch.zeros(batch, pipe.vae.config.in_channels, height, width, device=meta)
        enc = count_flops(lambda x: vae_meta.encode(x, return_dict=False), pixels)
    result = FlopBreakdown(text_encoder=sum(text_by.values()), unet_per_eval=denoiser_flops, vae_decode=decode, vae_encode=enc,
                           text_by=text_by)
    _CACHE[key] = result
    return result


def recorded_flops(pipe: Any, inputs: Any, denoiser: str | None = None) -> FlopBreakdown:
    """FLOPs of one call from the input shapes it recorded (:class:`~diffprof.engine.instrument.CallInputs`):
    every text-encoder and VAE forward it made, and the mean of its first denoiser evaluations.

    Any pipeline whose modules build on the meta device from their configs can be counted this way;
    a module whose forward reads its inputs' values (data-dependent shapes) raises."""
    from diffprof.flops.recorded import replay

    return replay(pipe, inputs, denoiser or _denoiser_name(pipe), count_flops)
