"""What a loaded pipeline is made of, as the engine needs it: found once, from the family registry or
from the pipeline itself.

A registered family (``models/families.py``) says which component denoises (``unet`` or
``transformer``), which text encoders run, how guidance costs and which call options a faithful call
needs. A pipeline no family covers (QwenImage, FLUX.2 and any other ``DiffusionPipeline`` from a folder
or the Hub) is read from its own components: the ``transformer`` or ``unet`` it holds, its
``text_encoder*`` modules, its VAE's encoder and decoder, its scheduler's config and the parameters of
its ``__call__``. Instrumentation, sizes, scheduler checks and FLOP counts all read this one
:class:`Anatomy`, so none of them assumes a UNet.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from diffprof.errors import ModelError
from diffprof.models.families import FAMILIES, NO_BINNING, FamilySpec, is_flow_config

StepHook = Literal["on_step_end", "legacy", "none"]
#: What a call needs from a pipeline's ``__call__`` to run one instrumented text-to-image generation.
REQUIRED_CALL_PARAMETERS = ("prompt", "num_inference_steps", "height", "width", "generator", "output_type")


@dataclass(frozen=True)
class Anatomy:
    """The parts of one pipeline and how a call runs them.

    Attributes:
        family: the registry family (``flux``) or ``generic``.
        pipeline_class: the diffusers class name (``FluxPipeline``).
        denoiser: the component that runs every step, ``unet`` or ``transformer``.
        text_encoders: text-encoder components present, in pipeline order (an encoder a user dropped,
            as SD3 allows for T5, is left out).
        vae_parts: ``{"vae_encode": module, "vae_decode": module}``: the VAE's encoder and decoder.
        native_size: the size a call runs at when none is asked (the preset's, else from the configs).
        size_multiple: sides must be multiples of this (VAE factor x patch x packing: FLUX and SD3 16,
            SANA 32, SD 8).
        flow: the model's scheduler integrates a flow (FlowMatch*, or flow sigmas): flow-matching
            schedulers apply, noise-schedule ones do not.
        sets_sigmas: the pipeline hands the scheduler its own sigma schedule (FLUX, QwenImage, FLUX.2),
            so a scheduler whose ``set_timesteps`` takes no ``sigmas`` cannot run it.
        guidance: ``cfg``, ``distilled`` (FLUX.1: one evaluation per step) or ``pipeline`` (generic:
            whatever the pipeline does; FLOPs then come from the calls that ran).
        step_hook: how step ends are seen: ``callback_on_step_end``, the older ``callback`` (PixArt),
            or neither (steps are then delimited by denoiser calls).
        call_options: call arguments a faithful call needs (PixArt/SANA: no resolution binning, no
            caption cleaning; a preset's ``max_sequence_length``).
        call_parameters: the names ``__call__`` accepts (arguments it lacks are not passed).
        stand_ins: ``{tokenizer: what it stands in for}`` (``LoadedPipeline.stand_ins``).
    """

    family: str
    pipeline_class: str
    denoiser: str
    text_encoders: tuple[str, ...]
    vae_parts: Mapping[str, Any] = field(repr=False)
    native_size: int
    size_multiple: int
    flow: bool
    sets_sigmas: bool
    guidance: str
    step_hook: StepHook
    call_options: Mapping[str, Any] = field(default_factory=dict)
    call_parameters: frozenset[str] = field(default=frozenset(), repr=False)
    stand_ins: Mapping[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> FamilySpec | None:
        return FAMILIES.get(self.family)

    @property
    def scheduler_kind(self) -> Any:
        """The :class:`~diffprof.engine.schedulers.SchedulerKind` of schedulers this pipeline takes."""
        from diffprof.engine.schedulers import SchedulerKind

        return SchedulerKind(self.flow, self.sets_sigmas)

    @property
    def stand_in_note(self) -> str | None:
        """One sentence for tables and ``generate`` when a tokenizer is a stand-in, else ``None``."""
        if not self.stand_ins:
            return None
        parts = "; ".join(f"{name} = {note}" for name, note in self.stand_ins.items())
        return f"stand-in tokenizers ({parts}): real sequence lengths, so time and memory are the model's; token ids and images are not"


def anatomy_of(loaded: Any) -> Anatomy:
    """The :class:`Anatomy` of a :class:`~diffprof.models.loaded.LoadedPipeline`.

    Raises:
        ModelError: the pipeline lacks what an instrumented text-to-image call needs (a ``unet`` or
            ``transformer``, a prompt, a size, a step count); the message names what is missing.
    """
    import torch

    pipe, spec, preset = loaded.pipeline, loaded.spec, loaded.preset
    name = type(pipe).__name__
    denoiser = loaded.denoiser
    params = frozenset(inspect.signature(type(pipe).__call__).parameters)
    missing = [] if denoiser and isinstance(getattr(pipe, denoiser, None), torch.nn.Module) else ["it has no unet or transformer"]
    arguments = [p for p in REQUIRED_CALL_PARAMETERS if p not in params]
    if arguments:
        missing.append(f"its __call__ takes no {', '.join(arguments)}")
    if missing:
        raise ModelError(f"diffprof cannot run {name} ({loaded.source}): {'; '.join(missing)}",
                         "diffprof profiles text-to-image pipelines with a UNet or transformer denoiser that take a prompt, "
                         "a size and a step count; use such a pipeline's folder or Hub id")
    encoders = tuple(e for e in loaded.text_encoders if isinstance(getattr(pipe, e, None), torch.nn.Module))
    vae = vae_of(pipe, (str(denoiser), *encoders))
    parts = {span: getattr(vae, attr) for span, attr in (("vae_encode", "encoder"), ("vae_decode", "decoder"))
             if isinstance(getattr(vae, attr, None), torch.nn.Module)}
    # A pipeline no family covers gets what PixArt and SANA get where its __call__ takes it (HunyuanDiT
    # snaps 64x64 to 1024x1024 otherwise): a profile must compute the size it reports.
    options = dict(spec.call_options) if spec is not None else {k: v for k, v in NO_BINNING.items() if k in params}
    if preset is not None and preset.max_sequence_length and "max_sequence_length" in params:
        options["max_sequence_length"] = preset.max_sequence_length
    flow = is_flow_config(pipe.scheduler.config)
    return Anatomy(
        family=loaded.family,
        pipeline_class=name,
        denoiser=str(denoiser),
        text_encoders=encoders,
        vae_parts=parts,
        native_size=_native_size(pipe, denoiser, preset),
        size_multiple=_size_multiple(pipe, denoiser, spec),
        flow=flow,
        sets_sigmas=spec.sets_sigmas if spec is not None else flow,
        guidance=spec.guidance if spec is not None else "pipeline",
        step_hook="on_step_end" if "callback_on_step_end" in params else "legacy" if "callback" in params else "none",
        call_options=options,
        call_parameters=params,
        stand_ins=dict(loaded.stand_ins),
    )


def vae_of(pipe: Any, taken: tuple[str, ...] = ()) -> Any:
    """The pipeline's autoencoder: its ``vae``, else the one component with an ``encoder``/``decoder`` pair
    and a ``decode`` method (Kandinsky's MoVQ is ``movq``); ``None`` when it has none."""
    import torch

    vae = getattr(pipe, "vae", None)
    if vae is not None:
        return vae
    found = [m for c, m in pipe.components.items() if c not in taken and isinstance(m, torch.nn.Module)
             and isinstance(getattr(m, "decoder", None), torch.nn.Module) and callable(getattr(m, "decode", None))]
    return found[0] if len(found) == 1 else None


def _vae_factor(pipe: Any) -> int:
    """Pixels per latent along a side: the pipeline's ``vae_scale_factor``, else its autoencoder's levels, else 8."""
    factor = getattr(pipe, "vae_scale_factor", None)
    if factor:
        return int(factor)
    levels = (getattr(vae_of(pipe), "config", None) or {}).get("block_out_channels")
    return 2 ** (len(levels) - 1) if levels else 8


def _native_size(pipe: Any, denoiser: str, preset: Any) -> int:
    """The preset's size, else the size the denoiser's config and the VAE factor give, else the default
    ``height`` of the pipeline's ``__call__`` (Kandinsky 3's UNet config names no sample size), else 128 latents."""
    if preset is not None:
        return int(preset.native_size)
    config = getattr(pipe, denoiser).config
    sample = (config.get("sample_size") if denoiser == "unet" else
              getattr(pipe, "default_sample_size", None) or config.get("sample_size"))
    if isinstance(sample, (list, tuple)):
        sample = sample[0]
    if isinstance(sample, int) and sample > 0:
        return int(sample * _vae_factor(pipe))
    default = inspect.signature(type(pipe).__call__).parameters.get("height")
    if default is not None and isinstance(default.default, int) and default.default > 0:
        return int(default.default)
    return int(128 * _vae_factor(pipe))


def _size_multiple(pipe: Any, denoiser: str, spec: FamilySpec | None) -> int:
    """Pixels per denoiser token along a side: latents are 1/VAE factor of the image, then patched (SD3,
    PixArt: 2) and packed (FLUX: 2x2 latents per token). Pipelines no family covers are taken to pack
    2x2 latents, as QwenImage and FLUX.2 do (their own checks ask for VAE factor x 2)."""
    factor = _vae_factor(pipe)
    if denoiser == "unet":
        return factor
    if spec is None:
        return factor * 2
    patch = int(getattr(getattr(pipe, denoiser).config, "patch_size", 1) or 1)
    return math.lcm(factor * patch * spec.packing, spec.size_multiple)
