"""The original single-file checkpoint layout (LDM / "CompVis"), both directions of it we need.

Most Stable Diffusion checkpoints people have are one ``.safetensors`` file in the layout of the
original training code (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``
or ``conditioner.embedders.*``). diffusers reads that layout (``from_single_file``); this module
writes it from a diffusers pipeline, so single-file loading can be tested offline and users can
export, and it recognizes which model a checkpoint holds from its tensor names and shapes alone
(no weights read), so loading needs no download of configs.

The mapping is the inverse of diffusers' ``loaders/single_file_utils.py`` conversion (UNet, VAE,
OpenAI-CLIP text in the Hugging Face layout, OpenCLIP text with fused ``in_proj`` attention).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from diffprof.models.presets import PRESETS, Family, ModelPreset

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
#: Where each text encoder lives, per family, and whether it uses the OpenCLIP layout.
SD_CLIP_PREFIX = "cond_stage_model.transformer.text_model."
SD_OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

_CONTEXT_KEY = re.compile(re.escape(UNET_PREFIX) + r".*\.attn2\.to_k\.weight$")
_IN_KEY = UNET_PREFIX + "input_blocks.0.0.weight"


# ---------------------------------------------------------------------------------------------------
# Recognizing a checkpoint


@dataclass(frozen=True)
class CheckpointSignature:
    """What identifies an SD architecture in a checkpoint: enough to pick a config, nothing more."""

    family: Family
    in_channels: int  # 4: text-to-image, 9: inpainting
    model_channels: int  # UNet width (320 for the real models)
    context_dim: int  # cross-attention width: 768 SD1, 1024 SD2, 2048 SDXL


def signature_of(shapes: Mapping[str, tuple[int, ...]]) -> CheckpointSignature | None:
    """The signature of a checkpoint given its tensor names and shapes; ``None`` if it is not SD/SDXL."""
    if _IN_KEY not in shapes:
        return None
    context = next((shape for key, shape in shapes.items() if _CONTEXT_KEY.match(key)), None)
    if context is None:
        return None
    family: Family = "sdxl" if any(k.startswith("conditioner.embedders.") for k in shapes) else "sd"
    out_channels, in_channels = shapes[_IN_KEY][:2]
    return CheckpointSignature(family, int(in_channels), int(out_channels), int(context[1]))


def preset_signature(preset: ModelPreset) -> CheckpointSignature:
    """The signature a checkpoint of ``preset``'s architecture has."""
    unet = preset.component_config("unet")
    return CheckpointSignature(preset.family, unet["in_channels"], unet["block_out_channels"][0],
                               unet["cross_attention_dim"])


def match_preset(signature: CheckpointSignature) -> ModelPreset | None:
    """The first preset whose architecture has ``signature`` (SD 2 checkpoints resolve to ``sd21``)."""
    return next((p for p in PRESETS.values() if p.denoiser == "unet" and preset_signature(p) == signature), None)


# ---------------------------------------------------------------------------------------------------
# Writing the layout


def to_ldm(pipeline: Any) -> dict[str, torch.Tensor]:
    """The pipeline's weights in the original single-file layout (tensors shared, not copied, where possible)."""
    state: dict[str, torch.Tensor] = {}
    unet_config = dict(pipeline.unet.config)
    for key, value in pipeline.unet.state_dict().items():
        state[UNET_PREFIX + _unet_key(key, unet_config)] = value
    vae_config = dict(pipeline.vae.config)
    for key, value in pipeline.vae.state_dict().items():
        ldm_key, value = _vae_entry(key, value, len(vae_config["up_block_types"]))
        state[VAE_PREFIX + ldm_key] = value
    text_encoders = [pipeline.text_encoder]
    if getattr(pipeline, "text_encoder_2", None) is not None:
        text_encoders.append(pipeline.text_encoder_2)
        prefixes = [SDXL_CLIP_PREFIX, SDXL_OPENCLIP_PREFIX]
    else:
        prefixes = [SD_CLIP_PREFIX if _is_openai_clip(pipeline.text_encoder) else SD_OPENCLIP_PREFIX]
    for encoder, prefix in zip(text_encoders, prefixes):
        entries = _clip_entries(encoder) if prefix.endswith("text_model.") else _openclip_entries(encoder)
        state.update({prefix + key: value for key, value in entries.items()})
    return state


_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
}
_UNET_BLOCK = re.compile(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)")
_UNET_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return dict(_RESNET).get(head, head) + "." + tail


def _unet_key(key: str, config: dict[str, Any]) -> str:
    for prefix, ldm in _UNET_FIXED.items():
        if key.startswith(prefix):
            return ldm + key[len(prefix):]
    per_block = config["layers_per_block"] + 1  # LDM counts the down/up-sampler as a layer of its block
    if match := _UNET_BLOCK.fullmatch(key):
        side, block, kind, index, rest = match[1], int(match[2]), match[3], int(match[4]), match[5]
        if side == "down":
            if kind == "downsamplers":
                return f"input_blocks.{(block + 1) * per_block}.0.op.{rest.removeprefix('conv.')}"
            layer = 1 + block * per_block + index
            return f"input_blocks.{layer}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{layer}.1.{rest}"
        if kind == "upsamplers":
            # the upsampler follows the block's last layer: after its attention when the block has one
            slot = 2 if "CrossAttn" in config["up_block_types"][block] else 1
            return f"output_blocks.{block * per_block + per_block - 1}.{slot}.{rest}"
        layer = block * per_block + index
        return f"output_blocks.{layer}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{layer}.1.{rest}"
    if match := _UNET_MID.fullmatch(key):
        kind, index, rest = match[1], int(match[2]), match[3]
        return f"middle_block.{2 * index}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    raise ValueError(f"no original-layout name for UNet parameter {key!r}")


_VAE_FIXED = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out."}
_VAE_BLOCK = re.compile(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)")
_VAE_MID = re.compile(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)")
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_entry(key: str, value: torch.Tensor, num_up: int) -> tuple[str, torch.Tensor]:
    for prefix, ldm in _VAE_FIXED.items():
        if key.startswith(prefix):
            return ldm + key[len(prefix):], value
    if match := _VAE_BLOCK.fullmatch(key):
        part, side, block, kind, index, rest = match[1], match[2], int(match[3]), match[4], match[5], match[6]
        level = block if side == "down" else num_up - 1 - block  # LDM numbers decoder levels bottom-up
        if kind in ("downsamplers", "upsamplers"):
            return f"{part}.{side}.{level}.{kind[:-2]}.{rest}", value  # ...downsample.conv.weight
        return f"{part}.{side}.{level}.block.{index}.{rest.replace('conv_shortcut', 'nin_shortcut')}", value
    if match := _VAE_MID.fullmatch(key):
        part, kind, index, rest = match[1], match[2], int(match[3]), match[4]
        if kind == "resnets":
            return f"{part}.mid.block_{index + 1}.{rest}", value
        layer, _, param = rest.rpartition(".")
        if layer != "group_norm" and param == "weight":
            value = value.reshape(*value.shape, 1, 1)  # LDM's attention projections are 1x1 convolutions
        return f"{part}.mid.attn_1.{_VAE_ATTENTION[layer]}.{param}", value
    if key.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        return key, value  # conv_in / conv_out / quant convs keep their names
    raise ValueError(f"no original-layout name for VAE parameter {key!r}")


def _is_openai_clip(encoder: Any) -> bool:
    """SD 1.x ships OpenAI's CLIP (quick-GELU, stored in Hugging Face layout); SD 2.x ships OpenCLIP."""
    return bool(encoder.config.hidden_act == "quick_gelu")


def _text_state(encoder: Any) -> dict[str, torch.Tensor]:
    """Text-model parameters with no ``text_model.`` prefix, whatever transformers version nests it."""
    return {key.removeprefix("text_model."): value for key, value in encoder.state_dict().items()}


def _clip_entries(encoder: Any) -> dict[str, torch.Tensor]:
    return {key: value for key, value in _text_state(encoder).items() if not key.endswith("position_ids")}


_OPENCLIP_FIXED = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPENCLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")


def _openclip_entries(encoder: Any) -> dict[str, torch.Tensor]:
    state = _text_state(encoder)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _OPENCLIP_FIXED:
            out[_OPENCLIP_FIXED[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()  # OpenCLIP multiplies x @ P
        elif match := _LAYER.fullmatch(key):
            layer, name, param = match[1], match[2], match[3]
            if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                if name.endswith("q_proj"):  # q, k, v fused into one in_proj, in that order
                    parts = [state[f"encoder.layers.{layer}.self_attn.{p}_proj.{param}"] for p in "qkv"]
                    out[f"transformer.resblocks.{layer}.attn.in_proj_{param}"] = torch.cat(parts)
            else:
                out[f"transformer.resblocks.{layer}.{_OPENCLIP_LAYER[name]}.{param}"] = value
        elif not key.endswith("position_ids"):
            raise ValueError(f"no original-layout name for text-encoder parameter {key!r}")
    return out
