"""One pipeline call, as plain data: what :meth:`RunConfig.to_request` builds and ``Engine.generate`` runs.

It lives below both (layer 0, no torch) so the config schema can build it without importing the
engine; ``from diffprof.engine import GenerationRequest`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - PIL is only a type here
    from PIL import Image

DEFAULT_PROMPT = "a large red circle in the center on a blue background"
#: The scheduler name that keeps the model's own scheduler (the preset's or the checkpoint's).
DEFAULT_SCHEDULER = "default"


@dataclass
class GenerationRequest:
    """One pipeline call. ``None`` sizes mean the model's native size (or the init image's)."""

    prompt: str | list[str] = DEFAULT_PROMPT
    negative_prompt: str | list[str] | None = None
    task: str = "txt2img"
    scheduler: str = DEFAULT_SCHEDULER
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
