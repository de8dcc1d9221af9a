"""An attention processor for SD3 / SD 3.5 joint attention over fused Q/K/V projections.

diffusers fuses SD3's projections (``SD3Transformer2DModel.fuse_qkv_projections``) but its
``FusedJointAttnProcessor2_0`` skips the query/key RMS norms SD 3.5 has (``qk_norm="rms_norm"``,
``norm_q``/``norm_k``/``norm_added_q``/``norm_added_k``) and needs text states, which SD 3.5's
image-only second attention (its dual-attention blocks) never gets: on tiny-sd3 at fp32 its latents
were 1.5% off the unfused model's. :class:`FusedJointAttention` is ``JointAttnProcessor2_0``'s
arithmetic step for step, with the image stream's Q, K, V read from ``to_qkv`` and the text stream's
from ``to_added_qkv``; it is installed through diffusers' public ``set_processor``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class FusedJointAttention:
    """``JointAttnProcessor2_0`` on fused projections (see the module docstring)."""

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        residual = hidden_states
        batch_size = hidden_states.shape[0]
        query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        head_dim = key.shape[-1] // attn.heads

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if encoder_hidden_states is not None:
            context = [heads(x) for x in attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)]
            if attn.norm_added_q is not None:
                context[0] = attn.norm_added_q(context[0])
            if attn.norm_added_k is not None:
                context[1] = attn.norm_added_k(context[1])
            query, key, value = (torch.cat([x, c], dim=2) for x, c in zip((query, key, value), context))
        hidden_states = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        if encoder_hidden_states is not None:
            hidden_states, encoder_hidden_states = hidden_states[:, : residual.shape[1]], hidden_states[:, residual.shape[1]:]
            if not attn.context_pre_only:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return (hidden_states, encoder_hidden_states) if encoder_hidden_states is not None else hidden_states


def install_on_sd3(model: Any) -> int:
    """After ``fuse_qkv_projections``: :class:`FusedJointAttention` on every fused attention of an SD3
    transformer; how many."""
    n = 0
    for module in model.modules():
        if getattr(module, "fused_projections", False) and hasattr(module, "to_qkv") and hasattr(module, "set_processor"):
            module.set_processor(FusedJointAttention())
            n += 1
    return n
