"""Tiny built-in pipelines: every code path of the real ones, at test speed on one CPU thread.

``tiny-sd`` and ``tiny-sdxl`` keep the structure of SD 1.5 and SDXL (same block types, cross-
attention, SDXL's two text encoders and micro-conditioning, a 4-level VAE so the VAE scale factor is
8, the real 49,408-token CLIP vocabulary) at widths of 32-64 channels, so a 64 px, 2-step txt2img
call takes ~25-60 ms on one thread. Their configs are ``configs/tiny-*`` (the same format as the real
presets'); weights are random and fixed by the seed, generated on CPU so they are identical on every
device. SDXL's second text encoder is wider (64) than its first (32) so the two can be told apart
by shape when a single-file checkpoint is read back, as with the real models (768 vs 1280).
"""

from __future__ import annotations

from typing import Any

import torch

from diffprof.errors import ModelError
from diffprof.models import synthetic
from diffprof.models.presets import PRESETS, get_preset, variant_for

TINY_PRESETS: tuple[str, ...] = tuple(name for name, p in PRESETS.items() if p.builtin and p.weights_dir is None)


def build_tiny(name: str = "tiny-sd", seed: int = 0, *, inpaint: bool = False, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Any:
    """A tiny pipeline with seeded random weights.

    Args:
        name (`str`, defaults to ``"tiny-sd"``): ``tiny-sd`` or ``tiny-sdxl`` (or their ``-inpaint`` presets).
        seed (`int`, defaults to 0): same seed, same weights; a different seed gives different weights.
        inpaint (`bool`, defaults to `False`): build the 9-channel inpainting variant
            (``StableDiffusionInpaintPipeline`` / ``StableDiffusionXLInpaintPipeline``).
        device, dtype: where and in what precision the pipeline lives (weights are made on CPU in fp32 first).
    """
    preset = get_preset(name)
    if name not in TINY_PRESETS:
        raise ModelError(f"{name!r} is not a tiny built-in model", f"tiny models: {', '.join(TINY_PRESETS)}")
    preset = variant_for(preset, True) if inpaint else preset
    return synthetic.build_pipeline(preset, device=device, dtype=dtype, seed=seed, portable=True)
