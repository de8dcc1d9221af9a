"""What goes into an engine call and what comes out: plain data, no measuring.

:class:`GenerationRequest` is one pipeline call; :class:`GenerationResult` its images, latents,
per-component :class:`~diffprof.engine.timing.CallTiming` and the settings it ran with;
:class:`LoadInfo` what loading the pipeline cost. :func:`check_request` and :func:`call_images`
refuse a bad request and settle its size and init image / mask before any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from diffprof.config import TASKS, check_size
from diffprof.engine.inputs import check_mask_matches, default_init_image, default_mask, load_image, load_mask
from diffprof.engine.timing import CallTiming
from diffprof.errors import ConfigError, InputError, unknown_choice
from diffprof.profiler import OperationRecord
from diffprof.request import GenerationRequest


@dataclass
class LoadInfo:
    """What loading cost: the engine's first measurement."""

    model: str
    source: str
    family: str
    seconds: float
    bytes_read: int
    peak_allocated: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    #: ``warm`` when saved compile artifacts were loaded and the first call compiled nothing
    #: (``warm, but N of M graphs compiled anew`` when they did not cover it), ``cold ...`` otherwise.
    compile_cache: str | None = None
    #: The first generate call: compile, autotune, graph capture and lazy init, reported apart.
    first_call_s: float | None = None

    @property
    def gb_per_s(self) -> float | None:
        return self.bytes_read / self.seconds / 1e9 if self.bytes_read and self.seconds > 0 else None


@dataclass
class GenerationResult:
    images: list[Image.Image]
    latents: torch.Tensor | None
    timing: CallTiming
    request: GenerationRequest
    settings: dict[str, Any]
    records: list[OperationRecord] = field(default_factory=list)
    #: Input shapes of the call's first forwards per component (what FLOPs are counted from when no
    #: family builder covers the pipeline); ``None`` for a graphed loop.
    inputs: Any = None


def check_request(req: GenerationRequest) -> None:
    """Refuse what no pipeline could run (a concise error, never a silent correction)."""
    if req.task not in TASKS:
        raise unknown_choice("task", req.task, TASKS)
    if req.steps < 1:
        raise ConfigError(f"steps must be >= 1, got {req.steps}", "e.g. steps=20")
    if req.num_images < 1:
        raise ConfigError(f"batch must be >= 1, got {req.num_images}", "e.g. num_images=1")
    if not 0 < req.strength <= 1:
        raise ConfigError(f"strength must be in (0, 1], got {req.strength}", "1.0 ignores the init image entirely")
    check_size("width", req.width)
    check_size("height", req.height)


def call_images(req: GenerationRequest, native_size: int) -> tuple[int, int, Image.Image | None, Image.Image | None]:
    """``(width, height, init image, mask)`` of a call: sizes default to the init image's, else the
    model's native size; img2img/inpaint without an image get a seeded default one (and inpaint a
    default mask); an image of another size is resized, its mask checked against it first."""
    if req.task not in ("img2img", "inpaint"):
        return req.width or native_size, req.height or native_size, None, None
    image = req.image if isinstance(req.image, Image.Image) else (load_image(req.image) if req.image else None)
    mask = None
    if req.task == "inpaint":
        mask = req.mask if isinstance(req.mask, Image.Image) else (load_mask(req.mask) if req.mask else None)
    if image is not None and req.width is None and req.height is None:
        width, height = image.size
        if width % 8 or height % 8:
            raise InputError(f"init image is {width}x{height}; both sides must be multiples of 8", "resize it, or pass --width/--height")
    else:
        width, height = req.width or native_size, req.height or native_size
    if image is None:
        image = default_init_image(width, height, req.seed)
    elif image.size != (width, height):
        if mask is not None:
            check_mask_matches(image, mask)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        mask = mask.resize((width, height), Image.Resampling.NEAREST) if mask is not None else None
    if req.task == "inpaint":
        mask = mask if mask is not None else default_mask(width, height)
        check_mask_matches(image, mask)
    return width, height, image, mask
