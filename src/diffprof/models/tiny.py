"""Tiny built-in pipelines: every code path of the real ones, at test speed on one CPU thread.

``tiny-sd`` and ``tiny-sdxl`` keep the structure of SD 1.5 and SDXL (same block types, cross-
attention, SDXL's two text encoders and micro-conditioning, a 4-level VAE so the VAE scale factor is
8, the real 49,408-token CLIP vocabulary) at widths of 32-64 channels, so a 64 px, 2-step txt2img
call takes ~25-60 ms on one thread. Their configs are ``configs/tiny-*`` (the same format as the real
presets'); weights are random and fixed by the seed, generated on CPU so they are identical on every
device. SDXL's second text encoder is wider (64) than its first (32) so the two can be told apart
by shape when a single-file checkpoint is read back, as with the real models (768 vs 1280).

``tiny-sd3``, ``tiny-flux``, ``tiny-pixart`` and ``tiny-sana`` do the same for the diffusion
transformers: the real block types (SD 3.5 Medium's dual-attention MMDiT-X with RMS q/k norms, FLUX's
double- and single-stream blocks with guidance embedding and 2x2 latent packing, PixArt's AdaLN-single
cross-attention DiT, SANA's linear attention with a DC-AE and Gemma-2), the real text-encoder
families at 32-128 wide, the real sequence lengths (FLUX 512 + 77 tokens, SD3 256 + 77 + 77,
PixArt and SANA 300) and the real vocabularies or their stand-ins; a 64 px 2-step call is ~50-150 ms.
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
        name (`str`, defaults to ``"tiny-sd"``): ``tiny-sd``, ``tiny-sdxl`` (or their ``-inpaint`` presets),
            ``tiny-sd3``, ``tiny-flux``, ``tiny-pixart`` or ``tiny-sana``.
        seed (`int`, defaults to 0): same seed, same weights; a different seed gives different weights.
        inpaint (`bool`, defaults to `False`): build the 9-channel inpainting variant
            (``StableDiffusionInpaintPipeline`` / ``StableDiffusionXLInpaintPipeline``); transformer
            families inpaint with their text-to-image model: ``pipelines.for_task(pipe, family, "inpaint")``.
        device, dtype: where and in what precision the pipeline lives (weights are made on CPU in fp32 first).
    """
    preset = get_preset(name)
    if name not in TINY_PRESETS:
        raise ModelError(f"{name!r} is not a tiny built-in model", f"tiny models: {', '.join(TINY_PRESETS)}")
    preset = variant_for(preset, True) if inpaint else preset
    return synthetic.build_pipeline(preset, device=device, dtype=dtype, seed=seed, portable=True)
