"""A model's architecture on the meta device: what a workload costs it, before anything runs.

The cost model is fitted on a handful of measured points, but it predicts through quantities that
follow from the architecture alone, for any size, batch and optimization set:

- FLOPs per phase (text encoding by every encoder at its sequence length, one denoiser evaluation:
  the UNet or a diffusion transformer's joint attention over image + text tokens, VAE decode),
  counted by :mod:`diffprof.flops`; step time is fitted as overhead + FLOPs / throughput.
- activation bytes per phase, traced by :mod:`diffprof.estimate.activations` with the memory
  switches applied to the meta modules (VAE slicing and tiling, attention slicing, eager attention);
- weight bytes per component and the largest single layer (what offload modes keep resident);
- how many times the VAE decoder runs (tiles x slices), a per-call overhead that tiling multiplies.

Everything is cached per (size, batch, guidance, switches): tracing SDXL takes about a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from diffprof.engine.precision import DTYPES
from diffprof.engine.switches import Optimizations
from diffprof.errors import ModelError
from diffprof.estimate.activations import trace_memory
from diffprof.estimate.workload import Workload

_META = torch.device("meta")
#: Phases of a txt2img call, in the order they run (``unet``: the denoiser's, whatever it is; see
#: :meth:`Architecture.phase_name`).
PHASES = ("text", "unet", "vae")


@dataclass(frozen=True)
class Phase:
    """What one phase of a call costs, independent of the machine.

    Attributes:
        flops: floating-point operations of one run of the phase (one UNet evaluation for ``unet``).
        activation_bytes: largest number of activation bytes alive at once (traced on meta).
        weight_bytes: bytes of the weights this phase uses.
        calls: forward calls of the phase's module per run (VAE decoder: one per tile and slice).
    """

    flops: float
    activation_bytes: float
    weight_bytes: float
    calls: int = 1


@dataclass(frozen=True)
class Features:
    """Machine-independent cost of one workload under one optimization set."""

    text: Phase
    unet: Phase
    vae: Phase
    pixels: int
    batch: int
    largest_layer_bytes: float
    #: The VAE encodes of an img2img or inpaint call (the init image, the masked image), at batch 1.
    encode: Phase | None = None

    @property
    def weight_bytes(self) -> float:
        return self.text.weight_bytes + self.unet.weight_bytes + self.vae.weight_bytes

    def phase(self, name: str) -> Phase:
        return {"text": self.text, "unet": self.unet, "vae": self.vae}[name]


class Architecture:
    """The weighted modules of a model (denoiser, VAE, text encoders) on the meta device.

    ``sequence_lengths`` are the tokens each text encoder sees (a preset's; FLUX.1-schnell's T5 256);
    ``family`` decides what the pipeline feeds the denoiser and which text encoders run."""

    def __init__(self, name: str, modules: dict[str, Any], native_size: int, *, family: str = "sd",
                 sequence_lengths: dict[str, int] | None = None) -> None:
        self.name = name
        self.native_size = native_size
        self.family = family
        self.sequence_lengths = sequence_lengths
        #: ``unet`` or ``transformer``: the component that runs every step.
        self.denoiser = "transformer" if "transformer" in modules else "unet"
        self._fp32 = modules
        self._by_dtype: dict[torch.dtype, dict[str, Any]] = {torch.float32: modules}
        self._phase_cache: dict[tuple[Any, ...], Any] = {}
        self._bytes: dict[str, dict[str, float]] = {}
        self._largest: dict[str, float] = {}
        #: The model's own scheduler config (what ``default`` runs), when its files say; denoiser calls are counted on it.
        self.scheduler_config: dict[str, Any] | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def for_model(cls, model: str) -> Architecture:
        """The architecture of a preset (``sd15``, ``tiny-sd``) or of a local diffusers folder."""
        return _architecture(model)

    def modules(self, precision: str) -> dict[str, Any]:
        dtype = DTYPES[precision]
        if dtype not in self._by_dtype:
            self._by_dtype[dtype] = {name: _meta_cast(m, dtype) for name, m in self._fp32.items()}
        return self._by_dtype[dtype]

    @property
    def text_encoders(self) -> list[str]:
        return sorted(n for n in self._fp32 if n.startswith("text_encoder"))

    def phase_name(self, phase: str) -> str:
        """How reports name a phase: the denoiser's phase by its component (``unet``, ``transformer``)."""
        return self.denoiser if phase == "unet" else phase

    def vae_precision(self, precision: str) -> str:
        """SDXL pipelines decode in fp32 when the VAE is fp16 and its config says ``force_upcast``."""
        vae = self._fp32["vae"]
        if precision == "fp16" and self.family == "sdxl" and getattr(vae.config, "force_upcast", False):
            return "fp32"
        return precision

    @property
    def vae_scale(self) -> int:
        from diffprof.flops.inputs import vae_scale

        return vae_scale(self._fp32["vae"])

    # ------------------------------------------------------------------ weights
    def component_bytes(self, precision: str) -> dict[str, float]:
        """Bytes of each component's parameters and buffers in ``precision``."""
        if precision not in self._bytes:
            self._bytes[precision] = {name: float(_module_bytes(m)) for name, m in self.modules(precision).items()}
        return self._bytes[precision]

    def largest_layer_bytes(self, precision: str) -> float:
        """The largest single module's own weights: what sequential offload keeps on the device."""
        if precision not in self._largest:
            best = 0
            for module in self.modules(precision).values():
                for sub in module.modules():
                    best = max(best, sum(p.numel() * p.element_size() for p in sub.parameters(recurse=False)))
            self._largest[precision] = float(best)
        return self._largest[precision]

    # ------------------------------------------------------------------ features
    def features(self, workload: Workload, precision: str, optimizations: Optimizations) -> Features:
        """FLOPs, activation bytes and weight bytes per phase for ``workload`` (each phase cached
        on what it depends on, so the candidates of a budget question share traces)."""
        from diffprof.flops import pipeline_flops

        w = workload
        h, wd = w.height // self.vae_scale, w.width // self.vae_scale
        weights = self.component_bytes(precision)
        # FLOPs of text encoding and one UNet evaluation: the shared counter (cached there).
        flops = pipeline_flops(SimpleNamespace(**self._fp32), width=w.width, height=w.height, batch=w.batch, guidance=w.guided,
                               sequence_lengths=self.sequence_lengths)
        text_act = self._cached(("text", w.batch, w.guided, precision), lambda: self._text_activation(w.batch, w.guided, precision))
        unet_act = self._cached(("unet", h, wd, w.batch, w.guided, precision, optimizations.attention),
                                lambda: self._unet_activation(h, wd, w.batch, w.guided, precision, optimizations))
        vae_precision = self.vae_precision(precision)
        vae_flops, vae_act, vae_calls = self._cached(
            ("vae", h, wd, w.batch, vae_precision, optimizations.vae_slicing, optimizations.vae_tiling),
            lambda: self._vae_decode(h, wd, w.batch, vae_precision, optimizations),
        )
        encode = None
        if w.encodes:  # the init image (and an inpaint's masked image) through the VAE encoder, at batch 1
            enc_flops, enc_act = self._cached(("encode", w.height, w.width, vae_precision, optimizations.vae_tiling),
                                              lambda: self._vae_encode(w.height, w.width, vae_precision, optimizations))
            calls = encoder_calls(w.task, w.strength, self.in_channels)
            encode = Phase(float(enc_flops) * calls, float(enc_act), self.component_bytes(vae_precision)["vae"], calls=calls)
            vae_act = max(vae_act, enc_act)  # the encoder runs on the same resident VAE: its peak counts in that phase
        return Features(
            text=Phase(float(flops.text_encoder), float(text_act), sum(weights[name] for name in self.text_encoders)),
            unet=Phase(float(flops.unet_per_eval), float(unet_act), weights[self.denoiser]),
            vae=Phase(float(vae_flops), float(vae_act), self.component_bytes(vae_precision)["vae"], calls=vae_calls),
            pixels=w.pixels,
            batch=w.batch,
            largest_layer_bytes=self.largest_layer_bytes(precision),
            encode=encode,
        )

    @property
    def in_channels(self) -> int:
        """The denoiser's input channels (9: an inpainting UNet, fed latents + mask + masked-image latents)."""
        config = getattr(self._fp32[self.denoiser], "config", None)
        return int(getattr(config, "in_channels", 4) or 4)

    def memory_features(self, workload: Workload, precision: str, optimizations: Optimizations) -> Features:
        """:meth:`features` without FLOPs (zero): the weights and traced activations a memory check
        needs, sharing :meth:`features`' traces."""
        w = workload
        h, wd = w.height // self.vae_scale, w.width // self.vae_scale
        weights = self.component_bytes(precision)
        text_act = self._cached(("text", w.batch, w.guided, precision), lambda: self._text_activation(w.batch, w.guided, precision))
        unet_act = self._cached(("unet", h, wd, w.batch, w.guided, precision, optimizations.attention),
                                lambda: self._unet_activation(h, wd, w.batch, w.guided, precision, optimizations))
        vae_precision = self.vae_precision(precision)
        vae_act = self._cached(("vae-act", h, wd, w.batch, vae_precision, optimizations.vae_slicing, optimizations.vae_tiling),
                               lambda: self._vae_activation(h, wd, w.batch, vae_precision, optimizations))
        return Features(
            text=Phase(0.0, float(text_act), sum(weights[name] for name in self.text_encoders)),
            unet=Phase(0.0, float(unet_act), weights[self.denoiser]),
            vae=Phase(0.0, float(vae_act), self.component_bytes(vae_precision)["vae"]),
            pixels=w.pixels, batch=w.batch, largest_layer_bytes=self.largest_layer_bytes(precision),
        )

    def _cached(self, key: tuple[Any, ...], compute: Any) -> Any:
        if key not in self._phase_cache:
            self._phase_cache[key] = compute()
        return self._phase_cache[key]

    def _text_activation(self, batch: int, guided: bool, precision: str) -> int:
        """Text encoders run one after the other, each on its own sequence length; the largest
        activation peak of any one forward counts."""
        from diffprof.flops.inputs import denoiser_kind, text_plan

        modules = self.modules(precision)
        namespace = SimpleNamespace(**self._fp32)
        plan = text_plan(namespace, denoiser_kind(modules[self.denoiser]), batch, guided, self.sequence_lengths)
        return max(trace_memory(modules[name], torch.zeros(rows, length, dtype=torch.long, device=_META)).peak_bytes
                   for name, forwards in plan.items() for rows, length in forwards)

    def _unet_activation(self, h: int, w: int, batch: int, guided: bool, precision: str, opts: Optimizations) -> int:
        """One denoiser evaluation (both guidance halves in one batch under CFG), with the attention
        switch applied, fed as its family's pipeline feeds it (:mod:`diffprof.flops.inputs`)."""
        from diffprof.flops.inputs import denoiser_inputs, denoiser_kind

        modules = self.modules(precision)
        model = modules[self.denoiser]
        args, kwargs = denoiser_inputs(denoiser_kind(model), model, SimpleNamespace(**modules), batch=batch, guidance=guided,
                                       latent_h=h, latent_w=w, sequence_lengths=self.sequence_lengths, dtype=DTYPES[precision])
        with _attention(model, opts):
            return trace_memory(model, *args, **kwargs).peak_bytes

    def _vae_activation(self, h: int, w: int, batch: int, precision: str, opts: Optimizations) -> int:
        """The activation peak of VAE decode alone (no FLOP count)."""
        vae = self.modules(precision)["vae"]
        latents = torch.zeros(batch, vae.config.latent_channels, h, w, device=_META, dtype=DTYPES[precision])
        with _vae_modes(vae, opts):
            return trace_memory(lambda z: vae.decode(z, return_dict=False), latents).peak_bytes

    def _vae_encode(self, height: int, width: int, precision: str, opts: Optimizations) -> tuple[int, int]:
        """FLOPs and activation peak of one VAE encode of a ``height`` x ``width`` image at batch 1."""
        from diffprof.flops import count_flops

        vae = self.modules(precision)["vae"]
        image = torch.zeros(1, int(getattr(vae.config, "in_channels", 3)), height, width, device=_META, dtype=DTYPES[precision])

        def encode(x: torch.Tensor) -> Any:
            return vae.encode(x, return_dict=False)

        with _vae_modes(vae, opts):
            traced = trace_memory(encode, image)
            flops = count_flops(encode, image)
        return flops, traced.peak_bytes

    def _vae_decode(self, h: int, w: int, batch: int, precision: str, opts: Optimizations) -> tuple[int, int, int]:
        """FLOPs, activation peak and decoder calls of VAE decode with slicing / tiling as switched."""
        from diffprof.flops import count_flops

        vae = self.modules(precision)["vae"]
        latents = torch.zeros(batch, vae.config.latent_channels, h, w, device=_META, dtype=DTYPES[precision])

        def decode(z: torch.Tensor) -> Any:
            return vae.decode(z, return_dict=False)

        with _vae_modes(vae, opts):
            traced = trace_memory(decode, latents, calls_of=vae.decoder)
            flops = count_flops(decode, latents)
        return flops, traced.peak_bytes, traced.calls


# ---------------------------------------------------------------------- helpers
def encoder_calls(task: str, strength: float, in_channels: int) -> int:
    """VAE encoder forwards of one call, as diffusers' SD pipelines run them: img2img encodes the init
    image once; inpainting encodes the masked image, and the init image too when the UNet has 4
    channels (it blends image latents back in) or ``strength`` < 1 (its latents start from the image).
    A single generator encodes at batch 1 and repeats the latents over the batch."""
    if task == "img2img":
        return 1
    if task == "inpaint":
        return 1 + int(in_channels == 4 or strength < 1)
    return 0


def _memory_switches(opts: Optimizations) -> tuple[Any, ...]:
    """The switches that change FLOPs or activation memory (compile, channels_last do not, to first order)."""
    return (opts.attention, opts.vae_slicing, opts.vae_tiling)


class _attention:
    """Apply an attention switch to a meta UNet for one trace, then put its own processors back."""

    def __init__(self, unet: Any, opts: Optimizations) -> None:
        self.unet = unet
        self.opts = opts
        self.saved: dict[str, Any] | None = None

    def __enter__(self) -> None:
        if self.opts.attention not in ("slicing", "eager"):
            return
        self.saved = dict(self.unet.attn_processors)  # type: ignore[arg-type]
        if self.opts.attention == "slicing":
            self.unet.set_attention_slice("auto")  # type: ignore[operator]
        else:
            from diffusers.models.attention_processor import AttnProcessor

            self.unet.set_attn_processor(AttnProcessor())  # type: ignore[operator]

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            self.unet.set_attn_processor(self.saved)  # type: ignore[operator]


class _vae_modes:
    def __init__(self, vae: Any, opts: Optimizations) -> None:
        self.vae = vae
        self.opts = opts

    def __enter__(self) -> None:
        self.vae.use_slicing = self.opts.vae_slicing
        self.vae.use_tiling = self.opts.vae_tiling

    def __exit__(self, *exc: object) -> None:
        self.vae.use_slicing = False
        self.vae.use_tiling = False


def _module_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(b.numel() * b.element_size() for b in module.buffers())


def _meta_cast(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    import copy

    clone = copy.deepcopy(module)
    return nn.Module.to(clone, dtype=dtype)


@lru_cache(maxsize=8)
def _architecture(model: str) -> Architecture:
    from diffprof.models.families import FAMILIES, family_of_class
    from diffprof.models.presets import PRESETS, ModelPreset
    from diffprof.models.synthetic import build_models

    preset = PRESETS.get(model)
    if preset is None:
        folder = Path(model)
        if not (folder / "model_index.json").is_file():
            raise ModelError(
                f"cannot read the architecture of {model!r}: estimates need a preset or a diffusers folder",
                "use a preset name (see `diffprof models`) or the folder the model was loaded from",
            )
        index = json.loads((folder / "model_index.json").read_text())
        family = family_of_class(str(index.get("_class_name", ""))) if "transformer" in index else None
        sd_like = "sdxl" if "text_encoder_2" in index else "sd"  # a UNet folder of no registered class is read as SD's layout
        if family is None and ("transformer" in index or index.get("unet", [None, None])[1] != "UNet2DConditionModel"
                               or not set(FAMILIES[sd_like].components) <= set(index)):
            raise ModelError(f"cannot read the architecture of {model!r}: estimates cover the registered families "
                             f"({', '.join(FAMILIES)}), not {index.get('_class_name')}",
                             "calibrate and estimate a preset of a registered family; `generate` and `bench` run this model")
        denoiser = json.loads((folder / ("transformer" if family else "unet") / "config.json").read_text())
        factor = 8 if family != "sana" else 32
        preset = ModelPreset(
            name=model, family=family or sd_like, hub_id=None,  # type: ignore[arg-type]
            native_size=int(denoiser.get("sample_size", 64 if not family else 128)) * factor, inpaint=int(denoiser.get("in_channels", 4)) == 9,
            prediction_type="epsilon", description="", builtin=False, config_dir=str(folder.resolve()),
        )
    modules = build_models(preset, device="meta")
    arch = Architecture(model, dict(modules), preset.native_size, family=preset.family, sequence_lengths=preset.sequence_lengths)
    try:
        arch.scheduler_config = preset.component_config("scheduler")
    except (OSError, ValueError):
        arch.scheduler_config = None  # denoiser calls then follow the registry's evaluations per step
    return arch
