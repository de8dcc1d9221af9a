"""FLOPs per pipeline component, counted once per (architecture, size, batch) on the meta device.

Counting runs the real modules' forward on ``meta`` tensors under
``torch.utils.flop_counter.FlopCounterMode``: no memory, no compute, exact shapes. FLOPs are
2 x multiply-accumulates of conv/matmul/attention. CPU flash-attention has no formula in torch,
so one is supplied (otherwise attention would count 0 and SD1.5 would read ~16% low).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_CACHE: dict[tuple[Any, ...], FlopBreakdown] = {}


@dataclass(frozen=True)
class FlopBreakdown:
    """FLOPs of one call's components for a given size and batch."""

    text_encoder: int
    unet_per_eval: int
    vae_decode: int
    vae_encode: int = 0

    def per_call(self, unet_evals: int, decode: bool = True, encode: bool = False) -> int:
        return self.text_encoder + unet_evals * self.unet_per_eval + (self.vae_decode if decode else 0) + (self.vae_encode if encode else 0)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _sdpa_cpu_formula(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op.default] = _sdpa_cpu_formula
    return mapping


def count_flops(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Total FLOPs of ``fn(*args, **kwargs)`` (run it on meta tensors to make this free)."""
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def _unwrap(module: Any) -> Any:
    return getattr(module, "_orig_mod", module)


def _meta_copy(module: Any) -> Any:
    """Same architecture on the meta device (diffusers models via from_config, transformers via config)."""
    module = _unwrap(module)
    with torch.device("meta"):
        if hasattr(module, "from_config") and hasattr(module, "config") and not hasattr(module.config, "to_dict"):
            return type(module).from_config(module.config)
        return type(module)(module.config)


def _config_key(module: Any) -> str:
    module = _unwrap(module)
    cfg = module.config
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # bookkeeping, not architecture
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def pipeline_flops(pipe: Any, *, width: int, height: int, batch: int, guidance: bool, encode: bool = False) -> FlopBreakdown:
    """FLOPs of text encoding, one UNet evaluation and VAE decode for ``batch`` images.

    ``guidance`` doubles the UNet batch (classifier-free guidance runs both halves at once) and
    encodes the negative prompt too.
    """
    unet = _unwrap(pipe.unet)
    key = (_config_key(unet), _config_key(pipe.vae), width, height, batch, guidance, encode)
    if key in _CACHE:
        return _CACHE[key]
    cfg_mult = 2 if guidance else 1
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    h, w = height // scale, width // scale
    meta = torch.device("meta")

    text = 0
    hidden: list[int] = []
    pooled = 0
    for name in ("text_encoder", "text_encoder_2"):
        te = getattr(pipe, name, None)
        if te is None:
            continue
        te_meta = _meta_copy(te)
        ids = torch.zeros(batch * cfg_mult, 77, dtype=torch.long, device=meta)
        text += count_flops(te_meta, ids)
        hidden.append(te.config.hidden_size)
        pooled = getattr(te.config, "projection_dim", 0) if name == "text_encoder_2" else pooled

    unet_meta = _meta_copy(unet)
    ucfg = unet.config
    n = batch * cfg_mult
    sample = torch.zeros(n, ucfg.in_channels, h, w, device=meta)
    context = torch.zeros(n, 77, ucfg.cross_attention_dim, device=meta)
    kwargs: dict[str, Any] = {}
    if getattr(ucfg, "addition_embed_type", None) == "text_time":
        time_dims = (ucfg.projection_class_embeddings_input_dim - pooled) // ucfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(n, pooled, device=meta),
            "time_ids": torch.zeros(n, time_dims, device=meta),
        }
    t = torch.zeros(n, device=meta)
    unet_flops = count_flops(unet_meta, sample, t, encoder_hidden_states=context, return_dict=False, **kwargs)

    vae_meta = _meta_copy(pipe.vae)
    latents = torch.zeros(batch, pipe.vae.config.latent_channels, h, w, device=meta)
    decode = count_flops(lambda z: vae_meta.decode(z, return_dict=False), latents)
    enc = 0
    if encode:
        pixels = torch.zeros(batch, pipe.vae.config.in_channels, height, width, device=meta)
        enc = count_flops(lambda x: vae_meta.encode(x, return_dict=False), pixels)
    result = FlopBreakdown(text_encoder=text, unet_per_eval=unet_flops, vae_decode=decode, vae_encode=enc)
    _CACHE[key] = result
    return result
