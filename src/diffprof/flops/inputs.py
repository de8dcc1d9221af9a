"""Meta-device inputs of each denoiser and text encoder, as the family's pipeline calls them.

A denoiser's FLOPs depend on what it is fed: the latent grid (after patching and FLUX's 2x2 packing),
the text tokens it attends to (SD3: CLIP 77 + T5 256 in one joint sequence; FLUX: T5 512 beside the
image tokens; PixArt and SANA: 300 for cross-attention) and the batch (classifier-free guidance runs
both halves in one forward; FLUX's distilled guidance is an input of one evaluation). Each builder
below mirrors its pipeline's ``__call__``; ``tests/test_flops_dit.py`` checks them against the shapes
the pipelines really pass (recorded through the engine's hooks).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from diffprof.models.families import FAMILIES

_META = torch.device("meta")
#: Denoiser class -> the family whose pipeline feeds it (``unet``: SD and SDXL, one builder).
KINDS = {"UNet2DConditionModel": "unet", "SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux",
         "PixArtTransformer2DModel": "pixart", "SanaTransformer2DModel": "sana"}


class UnsupportedDenoiser(ValueError):
    """No builder knows how this denoiser is called (count what a call recorded instead)."""


def denoiser_kind(denoiser: Any) -> str:
    name = type(getattr(denoiser, "_orig_mod", denoiser)).__name__
    if name not in KINDS:
        raise UnsupportedDenoiser(f"no FLOP input builder for {name}")
    return KINDS[name]


def vae_scale(vae: Any) -> int:
    """Pixels per latent along a side: 2^(levels - 1) (8 for the SD/FLUX VAE, 32 for SANA's DC-AE)."""
    cfg = vae.config
    levels = getattr(cfg, "block_out_channels", None) or cfg.encoder_block_out_channels
    return int(2 ** (len(levels) - 1))


def _cfg(kind: str, guidance: bool) -> bool:
    """Whether the family's pipeline runs classifier-free guidance (both halves) at this guidance."""
    return guidance and (kind == "unet" or FAMILIES[kind].guidance == "cfg")


def _length(kind: str, component: str, sequence_lengths: Mapping[str, int] | None) -> int:
    default = next(t.max_length for t in FAMILIES[kind].text_encoders if t.component == component)
    return int((sequence_lengths or {}).get(component, default))


def text_plan(pipe: Any, kind: str, batch: int, guidance: bool, sequence_lengths: Mapping[str, int] | None) -> dict[str, list[tuple[int, int]]]:
    """``{text encoder: [(rows, tokens), ...]}``: the forwards each encoder makes for one call.

    Rows follow diffprof's convention of one row per image (the pipelines encode each prompt once and
    repeat it; text encoding is a small part of a call). CFG families encode the negative prompt too;
    SANA's Gemma reads its instruction prefix before the prompt (the negative prompt without it)."""
    cfg = _cfg(kind, guidance)
    if kind == "unet":
        present = [c for c in ("text_encoder", "text_encoder_2") if getattr(pipe, c, None) is not None]
        return {c: [(batch * (2 if cfg else 1), 77)] for c in present}
    plan: dict[str, list[tuple[int, int]]] = {}
    for encoder in FAMILIES[kind].text_encoders:
        if getattr(pipe, encoder.component, None) is None:
            continue  # dropped (SD3 runs without its T5)
        length = _length(kind, encoder.component, sequence_lengths)
        prompt = instruction_tokens(pipe) + length - 2 if kind == "sana" else length
        plan[encoder.component] = [(batch, prompt)] + ([(batch, length)] if cfg else [])
    return plan


def instruction_tokens(pipe: Any) -> int:
    """Tokens of SANA's default instruction prefix (``complex_human_instruction``) with the pipeline's
    tokenizer (the Gemma stand-in when only modules are given)."""
    from diffusers import SanaPipeline

    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        from diffprof.models.stand_ins import stand_in_tokenizer

        tokenizer = stand_in_tokenizer("gemma-2-2b")
    instruction = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
    return len(tokenizer.encode("\n".join(instruction)))


Zeros = Callable[..., torch.Tensor]


def _zeros_in(dtype: torch.dtype) -> Zeros:
    """A maker of meta zeros of ``dtype`` (activation traces need the run's dtype; FLOPs do not)."""
    return lambda *shape: torch.zeros(*shape, device=_META, dtype=dtype)


def _unet(model: Any, pipe: Any, n: int, h: int, w: int, lengths: Mapping[str, int] | None, zeros: Zeros) -> tuple[tuple[Any, ...], dict[str, Any]]:
    cfg = model.config
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    pooled = int(getattr(encoder_2.config, "projection_dim", 0)) if encoder_2 is not None else 0
    kwargs: dict[str, Any] = {"encoder_hidden_states": zeros(n, 77, cfg.cross_attention_dim), "return_dict": False}
    if getattr(cfg, "addition_embed_type", None) == "text_time":
        time_dims = (cfg.projection_class_embeddings_input_dim - pooled) // cfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": zeros(n, pooled), "time_ids": zeros(n, time_dims)}
    return (zeros(n, cfg.in_channels, h, w), zeros(n)), kwargs


def _sd3(model: Any, pipe: Any, n: int, h: int, w: int, lengths: Mapping[str, int] | None, zeros: Zeros) -> tuple[tuple[Any, ...], dict[str, Any]]:
    cfg = model.config
    # CLIP-L and CLIP-G hidden states side by side (77), then T5's; without T5 diffusers 0.42 feeds zeros of
    # the same length (max_sequence_length), so the transformer's work does not change
    tokens = 77 + _length("sd3", "text_encoder_3", lengths)
    return (), {"hidden_states": zeros(n, cfg.in_channels, h, w), "timestep": zeros(n),
                "encoder_hidden_states": zeros(n, tokens, cfg.joint_attention_dim),
                "pooled_projections": zeros(n, cfg.pooled_projection_dim), "return_dict": False}


def _flux(model: Any, pipe: Any, n: int, h: int, w: int, lengths: Mapping[str, int] | None, zeros: Zeros) -> tuple[tuple[Any, ...], dict[str, Any]]:
    cfg = model.config
    image = (h // 2) * (w // 2)  # 2x2 latents packed into one token
    text = _length("flux", "text_encoder_2", lengths)
    return (), {"hidden_states": zeros(n, image, cfg.in_channels), "timestep": zeros(n),
                "guidance": zeros(n) if cfg.guidance_embeds else None,
                "pooled_projections": zeros(n, cfg.pooled_projection_dim),
                "encoder_hidden_states": zeros(n, text, cfg.joint_attention_dim),
                "txt_ids": zeros(text, 3), "img_ids": zeros(image, 3), "return_dict": False}


def _pixart(model: Any, pipe: Any, n: int, h: int, w: int, lengths: Mapping[str, int] | None, zeros: Zeros) -> tuple[tuple[Any, ...], dict[str, Any]]:
    cfg = model.config
    text = _length("pixart", "text_encoder", lengths)
    added = {"resolution": zeros(n, 2), "aspect_ratio": zeros(n, 1)} if cfg.use_additional_conditions else {"resolution": None, "aspect_ratio": None}
    return (zeros(n, cfg.in_channels, h, w),), {"encoder_hidden_states": zeros(n, text, cfg.caption_channels),
                                                 "encoder_attention_mask": zeros(n, text) + 1,
                                                 "timestep": zeros(n), "added_cond_kwargs": added, "return_dict": False}


def _sana(model: Any, pipe: Any, n: int, h: int, w: int, lengths: Mapping[str, int] | None, zeros: Zeros) -> tuple[tuple[Any, ...], dict[str, Any]]:
    cfg = model.config
    text = _length("sana", "text_encoder", lengths)  # the transformer sees <bos> + the last 299 tokens
    return (zeros(n, cfg.in_channels, h, w),), {"encoder_hidden_states": zeros(n, text, cfg.caption_channels),
                                                 "encoder_attention_mask": zeros(n, text) + 1,
                                                 "timestep": zeros(n), "return_dict": False}


_BUILDERS: dict[str, Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "unet": _unet, "sd3": _sd3, "flux": _flux, "pixart": _pixart, "sana": _sana}


def denoiser_inputs(kind: str, model: Any, pipe: Any, *, batch: int, guidance: bool, latent_h: int, latent_w: int,
                    sequence_lengths: Mapping[str, int] | None = None, dtype: torch.dtype = torch.float32) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of one denoiser evaluation for ``batch`` images on the meta device, floating
    inputs in ``dtype``."""
    n = batch * (2 if _cfg(kind, guidance) else 1)
    return _BUILDERS[kind](model, pipe, n, latent_h, latent_w, sequence_lengths, _zeros_in(dtype))
