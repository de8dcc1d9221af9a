"""The fast path for flow-matching transformers (SD3 / SD 3.5 and FLUX.1): their pipelines' phases
run so the whole denoising loop can be one CUDA graph, as :mod:`diffprof.engine.fast` does for SD.

The phases are the pipeline's own, through its public pieces, in its order and with its arithmetic
(tested bit for bit on a CPU against ``__call__``): ``encode_prompt`` (through the text cache when one
is on), ``prepare_latents`` (FLUX packs 2x2 latents into tokens and builds their position ids), the
schedule from diffusers' own ``retrieve_timesteps`` and ``calculate_shift`` of the family's pipeline
module (FLUX hands the scheduler ``linspace(1, 1/n, n)`` sigmas shifted by ``mu`` for the image's
token count; SD3 shifts only when its scheduler asks for dynamic shifting), the loop (SD3 batches the
CFG halves; FLUX's distilled guidance is one more input), and the VAE decode (FLUX unpacks first; both
unscale and unshift). The scheduler's begin index is set before the loop, as FLUX's pipeline does, so
no step looks its timestep up with a host sync; which solvers' steps can be captured is
:data:`~diffprof.engine.fast.GRAPH_SAFE`.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from diffprof.engine.fast import FastPath, LoopInputs, StepCallback, to_pil

#: The diffusers module whose ``retrieve_timesteps`` / ``calculate_shift`` each family's pipeline uses,
#: and its default ``max_shift``.
PIPELINE_MODULES = {"flux": ("diffusers.pipelines.flux.pipeline_flux", 1.15), "sd3": ("diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3", 1.16)}
FAMILIES = tuple(PIPELINE_MODULES)


class FlowFastPath(FastPath):
    """txt2img for FLUX and SD3 pipelines, the loop optionally one CUDA graph."""

    def __init__(self, pipe: Any, family: str, **kwargs: Any) -> None:
        super().__init__(pipe, family, **kwargs)
        self._module = importlib.import_module(PIPELINE_MODULES[family][0])
        self._max_shift = PIPELINE_MODULES[family][1]
        self._schedule: dict[str, Any] = {}

    @property
    def denoiser(self) -> Any:
        return self.pipe.transformer

    def cfg(self, guidance: float) -> bool:
        return self.family == "sd3" and guidance > 1  # FLUX.1's guidance is distilled: one evaluation, an input

    # ------------------------------------------------------------- phases
    def prepare(self, call: dict[str, Any], steps: int, width: int, height: int, guidance: float, cfg: bool, device: torch.device) -> LoopInputs:
        pipe = self.pipe
        total = len(call["prompt"]) * call.get("num_images_per_prompt", 1)
        config = pipe.scheduler.config
        encoded = self.encode(call, cfg, device)
        if self.family == "flux":
            prompt_embeds, pooled, text_ids = encoded
            latents, image_ids = pipe.prepare_latents(total, pipe.transformer.config.in_channels // 4, height, width, prompt_embeds.dtype, device,
                                                      call["generator"])
            sigmas = None if config.get("use_flow_sigmas") else np.linspace(1.0, 1 / steps, steps)
            self._schedule = {"sigmas": sigmas, "mu": self._shift(latents.shape[1])}
            added = {"pooled_projections": pooled, "txt_ids": text_ids, "img_ids": image_ids}
            if pipe.transformer.config.guidance_embeds:
                added["guidance"] = torch.full([1], guidance, device=device, dtype=torch.float32).expand(latents.shape[0])
            return LoopInputs(latents, prompt_embeds, added)
        pe, npe, pooled, npooled = encoded
        if cfg:
            pe, pooled = torch.cat([npe, pe], dim=0), torch.cat([npooled, pooled], dim=0)
        latents = pipe.prepare_latents(total, pipe.transformer.config.in_channels, height, width, pe.dtype, device, call["generator"])
        self._schedule = {}
        if config.get("use_dynamic_shifting", None):
            patch = pipe.transformer.config.patch_size
            self._schedule["mu"] = self._shift((latents.shape[2] // patch) * (latents.shape[3] // patch))
        return LoopInputs(latents, pe, {"pooled_projections": pooled})

    def _shift(self, image_seq_len: int) -> float:
        config = self.pipe.scheduler.config
        return float(self._module.calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                                                  config.get("base_shift", 0.5), config.get("max_shift", self._max_shift)))

    def _restart(self, steps: int, device: torch.device) -> torch.Tensor:
        """The schedule as the pipeline sets it (its sigmas and shift), from the first step."""
        scheduler = self.pipe.scheduler
        timesteps, _ = self._module.retrieve_timesteps(scheduler, steps, device, **self._schedule)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return timesteps

    def loop(self, inputs: LoopInputs, timesteps: torch.Tensor, guidance: float, cfg: bool, callback: StepCallback | None = None) -> torch.Tensor:
        """The pipeline's denoising loop, with no host syncs; ``callback`` (eager runs only) sees each step end."""
        transformer, scheduler = self.pipe.transformer, self.pipe.scheduler
        added = inputs.added_cond or {}
        latents = inputs.latents
        for i, t in enumerate(timesteps):
            if self.family == "flux":
                timestep = t.expand(latents.shape[0]).to(latents.dtype)
                noise = transformer(hidden_states=latents, timestep=timestep / 1000, guidance=added.get("guidance"),
                                    pooled_projections=added["pooled_projections"], encoder_hidden_states=inputs.prompt_embeds,
                                    txt_ids=added["txt_ids"], img_ids=added["img_ids"], joint_attention_kwargs={}, return_dict=False)[0]
            else:
                model_input = torch.cat([latents] * 2) if cfg else latents
                noise = transformer(hidden_states=model_input, timestep=t.expand(model_input.shape[0]), encoder_hidden_states=inputs.prompt_embeds,
                                    pooled_projections=added["pooled_projections"], joint_attention_kwargs=None, return_dict=False)[0]
                if cfg:
                    uncond, text = noise.chunk(2)
                    noise = uncond + guidance * (text - uncond)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]
            if callback is not None:
                callback(i, t, latents)
        return latents

    def decode(self, latents: torch.Tensor, width: int, height: int) -> list[Any]:
        pipe, vae = self.pipe, self.pipe.vae
        if self.family == "flux":
            latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        if self.vae_dtype is not None and vae.dtype != self.vae_dtype:
            vae.to(self.vae_dtype)
        z = (latents / vae.config.scaling_factor) + vae.config.shift_factor
        image = vae.decode(z.to(vae.dtype) if self.vae_dtype is not None else z, return_dict=False)[0]
        return to_pil(pipe.image_processor, image)
