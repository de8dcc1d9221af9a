"""Single-file checkpoints of the diffusion-transformer families diffusers reads that way: SD3 and FLUX.

The original layouts: Stability's MMDiT (``model.diffusion_model.joint_blocks.*``, as in
``sd3.5_large.safetensors``) and Black Forest Labs' (``double_blocks.*`` / ``single_blocks.*``, as in
``flux1-dev.safetensors``, with or without the ``model.diffusion_model.`` prefix ComfyUI files carry).
An all-in-one file also holds the VAE (``first_stage_model.*``) and the text encoders
(``text_encoders.clip_l|clip_g|t5xxl.transformer.*``). This module writes that layout from a
pipeline (the inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers`` and
``convert_flux_transformer_checkpoint_to_diffusers``), recognizes which preset a file holds from its
tensor shapes alone, and loads it through diffusers' own ``from_single_file`` with our shipped configs.

Two limits are diffusers': its FLUX converter assumes FLUX.1's width (3072, MLP ratio 4), so only
full-width FLUX files load; and the SD3 layout keeps no CLIP-L text projection (diffusers sets it to
the identity on load, as the original inference code does).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from diffprof.models.ldm import VAE_PREFIX, _text_state, _vae_entry
from diffprof.models.presets import PRESETS, ModelPreset

PREFIX = "model.diffusion_model."
TEXT_PREFIXES = {"text_encoder": "text_encoders.clip_l.transformer.",
                 "text_encoder_2": "text_encoders.clip_g.transformer.",
                 "text_encoder_3": "text_encoders.t5xxl.transformer."}
_FLUX_T5 = "text_encoder_2"  # FLUX's T5 sits where SD3 keeps CLIP-G; the file names it t5xxl
_SD3_KEY = "joint_blocks.0.x_block.attn.qkv.weight"
_FLUX_KEY = "double_blocks.0.img_attn.qkv.weight"
FLUX_WIDTH = 3072  # convert_flux_transformer_checkpoint_to_diffusers hard-codes inner_dim = 3072


def _swap(weight: torch.Tensor) -> torch.Tensor:
    """Original AdaLN-continuous order is (shift, scale); diffusers' (scale, shift). Its own inverse."""
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _linear(out: dict[str, torch.Tensor], state: Mapping[str, torch.Tensor], ours: str, theirs: str) -> None:
    for param in ("weight", "bias"):
        if f"{ours}.{param}" in state:
            out[f"{theirs}.{param}"] = state[f"{ours}.{param}"]


def _fused(out: dict[str, torch.Tensor], state: Mapping[str, torch.Tensor], ours: list[str], theirs: str) -> None:
    for param in ("weight", "bias"):
        out[f"{theirs}.{param}"] = torch.cat([state[f"{name}.{param}"] for name in ours])


def sd3_transformer_entries(transformer: Any) -> dict[str, torch.Tensor]:
    """An ``SD3Transformer2DModel``'s tensors under the MMDiT names (no prefix)."""
    s, config = transformer.state_dict(), transformer.config
    out: dict[str, torch.Tensor] = {"pos_embed": s["pos_embed.pos_embed"]}
    for ours, theirs in (("pos_embed.proj", "x_embedder.proj"), ("context_embedder", "context_embedder"),
                         ("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
                         ("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
                         ("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0"),
                         ("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2"), ("proj_out", "final_layer.linear")):
        _linear(out, s, ours, theirs)
    out.update({f"final_layer.adaLN_modulation.1.{p}": _swap(s[f"norm_out.linear.{p}"]) for p in ("weight", "bias")})
    last = config.num_layers - 1
    for i in range(config.num_layers):
        d, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        _fused(out, s, [d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"], x + "attn.qkv")
        _fused(out, s, [d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"], c + "attn.qkv")
        pairs = [("attn.to_out.0", x + "attn.proj"), ("norm1.linear", x + "adaLN_modulation.1"),
                 ("ff.net.0.proj", x + "mlp.fc1"), ("ff.net.2", x + "mlp.fc2")]
        if i != last:  # the last context block only modulates and projects q/k/v (pre-only)
            pairs += [("attn.to_add_out", c + "attn.proj"), ("norm1_context.linear", c + "adaLN_modulation.1"),
                      ("ff_context.net.0.proj", c + "mlp.fc1"), ("ff_context.net.2", c + "mlp.fc2")]
        else:
            out.update({f"{c}adaLN_modulation.1.{p}": _swap(s[f"{d}norm1_context.linear.{p}"]) for p in ("weight", "bias")})
        for ours, theirs in pairs:
            _linear(out, s, d + ours, theirs)
        for ours, theirs in (("attn.norm_q", x + "attn.ln_q"), ("attn.norm_k", x + "attn.ln_k"),
                             ("attn.norm_added_q", c + "attn.ln_q"), ("attn.norm_added_k", c + "attn.ln_k"),
                             ("attn2.norm_q", x + "attn2.ln_q"), ("attn2.norm_k", x + "attn2.ln_k")):
            _linear(out, s, d + ours, theirs)
        if f"{d}attn2.to_q.weight" in s:  # MMDiT-X dual attention (SD 3.5 Medium's first 13 blocks)
            _fused(out, s, [d + "attn2.to_q", d + "attn2.to_k", d + "attn2.to_v"], x + "attn2.qkv")
            _linear(out, s, d + "attn2.to_out.0", x + "attn2.proj")
    return out


def flux_transformer_entries(transformer: Any) -> dict[str, torch.Tensor]:
    """A ``FluxTransformer2DModel``'s tensors under Black Forest Labs' names (no prefix)."""
    s, config = transformer.state_dict(), transformer.config
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in (("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
                         ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
                         ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
                         ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
                         ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
                         ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
                         ("context_embedder", "txt_in"), ("x_embedder", "img_in"), ("proj_out", "final_layer.linear")):
        _linear(out, s, ours, theirs)
    out.update({f"final_layer.adaLN_modulation.1.{p}": _swap(s[f"norm_out.linear.{p}"]) for p in ("weight", "bias")})
    for i in range(config.num_layers):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        _fused(out, s, [d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"], b + "img_attn.qkv")
        _fused(out, s, [d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"], b + "txt_attn.qkv")
        for ours, theirs in (("norm1.linear", "img_mod.lin"), ("norm1_context.linear", "txt_mod.lin"),
                             ("ff.net.0.proj", "img_mlp.0"), ("ff.net.2", "img_mlp.2"),
                             ("ff_context.net.0.proj", "txt_mlp.0"), ("ff_context.net.2", "txt_mlp.2"),
                             ("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj")):
            _linear(out, s, d + ours, b + theirs)
        for ours, theirs in (("attn.norm_q", "img_attn.norm.query_norm"), ("attn.norm_k", "img_attn.norm.key_norm"),
                             ("attn.norm_added_q", "txt_attn.norm.query_norm"),
                             ("attn.norm_added_k", "txt_attn.norm.key_norm")):
            out[f"{b}{theirs}.scale"] = s[f"{d}{ours}.weight"]
    for i in range(config.num_single_layers):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        _fused(out, s, [d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"], b + "linear1")
        _linear(out, s, d + "norm.linear", b + "modulation.lin")
        _linear(out, s, d + "proj_out", b + "linear2")
        out[f"{b}norm.query_norm.scale"] = s[f"{d}attn.norm_q.weight"]
        out[f"{b}norm.key_norm.scale"] = s[f"{d}attn.norm_k.weight"]
    return out


def to_original(pipeline: Any, family: str) -> dict[str, torch.Tensor]:
    """``pipeline``'s weights as one all-in-one original-layout checkpoint (SD3 or FLUX)."""
    entries = sd3_transformer_entries if family == "sd3" else flux_transformer_entries
    state = {PREFIX + key: value for key, value in entries(pipeline.transformer).items()}
    vae_config = dict(pipeline.vae.config)
    for key, value in pipeline.vae.state_dict().items():
        ldm_key, value = _vae_entry(key, value, len(vae_config["up_block_types"]))
        state[VAE_PREFIX + ldm_key] = value
    encoders = {"text_encoder": TEXT_PREFIXES["text_encoder"]}
    encoders.update({"text_encoder_2": TEXT_PREFIXES["text_encoder_2"], "text_encoder_3": TEXT_PREFIXES["text_encoder_3"]}
                    if family == "sd3" else {_FLUX_T5: TEXT_PREFIXES["text_encoder_3"]})
    for name, prefix in encoders.items():
        encoder = getattr(pipeline, name)
        if "t5xxl" in prefix:  # both names of T5's shared embedding table, as the original files have them
            tensors = {k: v.clone() if k == "encoder.embed_tokens.weight" else v for k, v in encoder.state_dict().items()}
        else:
            tensors = {("" if k == "text_projection.weight" else "text_model.") + k: v for k, v in _text_state(encoder).items()
                       if not k.endswith("position_ids")}
        state.update({prefix + k: v for k, v in tensors.items()})
    return state


def signature(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, tuple[int, ...]] | None:
    """``(family, architecture numbers)`` of an SD3 or FLUX checkpoint from its tensor shapes; ``None`` otherwise."""
    keys = {k.removeprefix(PREFIX): v for k, v in shapes.items() if not k.startswith(("first_stage_model.", "vae.", "text_encoders."))}
    if _SD3_KEY in keys:
        layers = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("joint_blocks."))
        dual = len({k.split(".")[1] for k in keys if ".attn2." in k})
        return "sd3", (keys[_SD3_KEY][1], layers, dual, keys["pos_embed"][1])
    if _FLUX_KEY in keys:
        double = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("double_blocks."))
        single = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("single_blocks."))
        return "flux", (keys[_FLUX_KEY][1], double, single, int("guidance_in.in_layer.weight" in keys))
    return None


def preset_signature(preset: ModelPreset) -> tuple[str, tuple[int, ...]]:
    config = preset.component_config("transformer")
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    if preset.family == "sd3":
        return "sd3", (hidden, config["num_layers"], len(config.get("dual_attention_layers") or ()),
                       config["pos_embed_max_size"] ** 2)
    return "flux", (hidden, config["num_layers"], config["num_single_layers"], int(config["guidance_embeds"]))


def match_preset(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str | None, ModelPreset | None]:
    """The family of an SD3/FLUX checkpoint and the preset with its architecture (``(None, None)``: neither)."""
    found = signature(shapes)
    if found is None:
        return None, None
    presets = (p for p in PRESETS.values() if p.family == found[0])
    return found[0], next((p for p in presets if preset_signature(p) == found), None)


def unsupported(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why diffusers' converter cannot read this SD3/FLUX file, ``None`` when it can."""
    found = signature(shapes)
    if found is not None and found[0] == "flux" and found[1][0] != FLUX_WIDTH:
        return (f"its FLUX converter assumes FLUX.1's width {FLUX_WIDTH} (MLP ratio 4); this transformer is "
                f"{found[1][0]} wide")
    return None


def missing_parts(shapes: Mapping[str, tuple[int, ...]], family: str) -> list[str]:
    """Components an all-in-one file would hold that this one lacks (BFL's FLUX files: all but the transformer)."""
    wanted = {"vae": (VAE_PREFIX, "vae."), "text_encoder": (TEXT_PREFIXES["text_encoder"],)}
    if family == "sd3":
        wanted.update(text_encoder_2=(TEXT_PREFIXES["text_encoder_2"],), text_encoder_3=(TEXT_PREFIXES["text_encoder_3"],))
    else:
        wanted[_FLUX_T5] = (TEXT_PREFIXES["text_encoder_3"],)
    return [name for name, prefixes in wanted.items() if not any(k.startswith(prefixes) for k in shapes)]


def load(path: Path, preset: ModelPreset, parts: dict[str, Any], dtype: torch.dtype) -> Any:
    """The preset's pipeline class ``from_single_file``, configured from our shipped configs (no download)."""
    from diffprof.models.pipelines import pipeline_class

    cls = pipeline_class(preset.family)
    return cls.from_single_file(str(path), config=str(preset.config_path), local_files_only=True, dtype=dtype, **parts)
