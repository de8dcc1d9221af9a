"""Real architectures with random weights, built fast on any device.

Speed, memory and FLOPs depend on the architecture, not on trained values, so a full-size model
with random weights profiles like the real one, with nothing to download. Building is quick even for
SDXL's 2.6B-parameter UNet: modules are constructed on the meta device (no memory, no init), each
parameter is then allocated directly on the target device in the target dtype, and every module's own
``reset_parameters()`` fills it there (PyTorch's default init, a sane range for fp16), from a seed.
Modules with their own parameters but no ``reset_parameters`` (RMS norms, DiT modulation tables) get
their library's init: a transformers model's ``_init_weights``, else norm scales 1, biases 0 and other
tensors N(0, 1/fan_in). Tied weights (T5's input embedding is its ``shared`` table) stay one tensor.
The same path builds the tiny built-in models on CPU.
"""

from __future__ import annotations

import zlib
from typing import Any, cast

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers.initialization import no_init_weights

from diffprof.models.pipelines import (
    MODEL_COMPONENTS,
    assemble,
    component_class,
    init_kwargs,
)
from diffprof.models.presets import ModelPreset


def build_models(preset: ModelPreset, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 seed: int = 0, home: str | torch.device | None = None) -> dict[str, nn.Module]:
    """The preset's weighted models (denoiser, VAE, text encoders), random and seeded, on ``device``.

    ``device="meta"`` returns them without allocating weights: enough to count parameters or FLOPs.
    The same seed on the same device type gives identical weights; each component draws from its own
    seed, so e.g. an inpainting UNet does not change the text encoder's weights. ``home``: where each
    component goes right after it is drawn (an offloaded engine's host memory: the weights are the
    ones drawn on ``device``, while ``device`` holds one component at a time).
    """
    models: dict[str, nn.Module] = {}
    meta = torch.device(device).type == "meta"
    # Buffers are built for real on CPU (and moved) except for meta builds of transformer families, whose
    # positional tables are large: SD 3.5 Medium's takes 9 s to compute for a parameter count.
    meta_buffers = meta and preset.denoiser == "transformer"
    for name in MODEL_COMPONENTS[preset.family]:
        # no_init_weights (transformers' own, as its from_pretrained builds): every module's __init__
        # would otherwise initialize its meta parameters, through torch's Python meta kernels (half
        # of a tiny model's build, and values a meta tensor cannot hold); _materialize initializes them.
        with init_empty_weights(include_buffers=meta_buffers), no_init_weights():
            model = _construct(preset, name)
        if hasattr(model, "tie_weights"):  # transformers: init_empty_weights re-creates tied parameters one by one
            model.tie_weights()  # (T5's input embedding is its shared table), so tie them again outside it
        if not meta:
            _materialize(model, torch.device(device), dtype, _component_seed(seed, name))
            if home is not None and torch.device(home) != torch.device(device):
                nn.Module.to(model, device=torch.device(home))
        models[name] = model.eval()
    return models


def build_pipeline(preset: ModelPreset, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   seed: int = 0, portable: bool = False, generate_on: str | torch.device | None = None) -> Any:
    """A complete pipeline of the preset's architecture with random weights (see :func:`build_models`).

    ``portable=True`` generates the weights on CPU in float32 and then moves and casts them, so a seed
    gives the same weights on every device and dtype (the built-in tiny models); otherwise they are
    generated directly on ``device`` in ``dtype``, which is what makes full-size models fast to build
    (on ``generate_on`` instead, when given, each component then moved to ``device``).
    """
    if not portable:
        if generate_on is not None:
            return assemble(preset, build_models(preset, device=generate_on, dtype=dtype, seed=seed, home=device))
        return assemble(preset, build_models(preset, device=device, dtype=dtype, seed=seed))
    models = build_models(preset, device="cpu", dtype=torch.float32, seed=seed)
    for model in models.values():
        # nn.Module.to: diffusers' ModelMixin.to warns on every dtype cast (an empty fp32-module list)
        nn.Module.to(model, device=torch.device(device), dtype=dtype)
    return assemble(preset, models)


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (works on the meta device); a tied tensor counts once."""
    return sum(p.numel() for p in model.parameters())


def stored_count(model: nn.Module) -> int:
    """Parameters plus persistent buffers: the numbers a checkpoint stores and memory holds.

    They differ where a model keeps a large fixed table as a buffer: SD 3.5 Medium's positional
    embedding (384 x 384 positions x 1536) is 227M numbers that published parameter counts include.
    """
    persistent = sum(b.numel() for name, b in model.named_buffers() if _is_persistent(model, name))
    return parameter_count(model) + persistent


def _is_persistent(model: nn.Module, name: str) -> bool:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    return leaf not in module._non_persistent_buffers_set


def _construct(preset: ModelPreset, name: str) -> nn.Module:
    cls: Any = component_class(preset, name)
    config = preset.component_config(name)
    if hasattr(cls, "from_config"):  # diffusers model
        model: nn.Module = cls.from_config(init_kwargs(cls, config))
        return model
    # transformers model: config class from the same dict the real repository ships
    model = cls(cls.config_class.from_dict(config))
    return model


def _component_seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}:{name}".encode())


def _materialize(model: nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> None:
    """Allocate ``model``'s meta parameters on ``device`` and initialize them with their modules' own init."""
    # Seed without disturbing the caller's global RNG streams (CPU, and the target accelerator's).
    on_accelerator = device.type != "cpu"
    index = device.index if device.index is not None else (torch.cuda.current_device() if device.type == "cuda" else 0)
    allocated: dict[int, nn.Parameter] = {}  # id of a meta parameter -> its tensor: tied parameters stay tied
    with torch.random.fork_rng(devices=[index] if on_accelerator else [],
                               device_type=device.type if on_accelerator else "cuda"):
        torch.manual_seed(seed)
        for module in model.modules():
            own = {k: p for k, p in module._parameters.items() if p is not None}
            if not own:
                continue
            for key, param in own.items():
                if id(param) not in allocated:
                    allocated[id(param)] = nn.Parameter(torch.empty(param.shape, device=device, dtype=dtype),
                                                        requires_grad=param.requires_grad)
                module._parameters[key] = allocated[id(param)]
            _initialize(model, module)
    model.to(device)  # buffers (e.g. CLIP's position ids) were built for real on CPU


def _initialize(model: nn.Module, module: nn.Module) -> None:
    if hasattr(module, "reset_parameters"):
        cast(Any, module).reset_parameters()
        return
    init_weights = getattr(model, "_init_weights", None)
    if init_weights is not None and hasattr(model, "config") and hasattr(model.config, "model_type"):  # transformers
        init_weights(module)
        return
    with torch.no_grad():
        for name, param in module.named_parameters(recurse=False):
            if param.ndim == 1:  # norm scale or bias
                param.fill_(0.0 if name.endswith("bias") else 1.0)
            else:  # e.g. PixArt/SANA's scale_shift_table, diffusers' own init: randn / sqrt(dim)
                param.normal_(0.0, param.shape[-1] ** -0.5)
