"""What goes into an engine call and what comes out: plain data, no measuring.

:class:`GenerationRequest` is one pipeline call; :class:`GenerationResult` its images, latents,
per-component :class:`~diffprof.engine.timing.CallTiming` and the settings it ran with;
:class:`LoadInfo` what loading the pipeline cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from diffprof.engine.schedulers import DEFAULT
from diffprof.engine.timing import CallTiming
from diffprof.profiler import OperationRecord


@dataclass
class GenerationRequest:
    """One pipeline call. ``None`` sizes mean the model's native size (or the init image's)."""

    prompt: str | list[str] = "a large red circle in the center on a blue background"
    negative_prompt: str | list[str] | None = None
    task: str = "txt2img"
    scheduler: str = DEFAULT
    steps: int = 20
    guidance: float = 7.5
    width: int | None = None
    height: int | None = None
    num_images: int = 1
    seed: int = 0
    strength: float = 0.75
    image: str | Image.Image | None = None
    mask: str | Image.Image | None = None
    decode: bool = True

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def total_images(self) -> int:
        return len(self.prompts) * self.num_images


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
