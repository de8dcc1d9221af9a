"""What is asked of the pipeline: one txt2img call of a given size, step count, batch and guidance."""

from __future__ import annotations

from dataclasses import dataclass

from diffprof.config import check_size
from diffprof.errors import ConfigError


@dataclass(frozen=True)
class Workload:
    """One call: ``batch`` images of ``width`` x ``height`` pixels in ``steps`` denoising steps.

    ``guidance`` > 1 runs classifier-free guidance in CFG families, which doubles the denoiser batch
    (both halves in one forward) and the text-encoder batch; FLUX's distilled guidance costs nothing.
    """

    width: int
    height: int
    steps: int
    batch: int = 1
    guidance: float = 7.5

    def __post_init__(self) -> None:
        check_size("width", self.width)
        check_size("height", self.height)
        for name in ("steps", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", f"e.g. --{name} 1")

    @property
    def guided(self) -> bool:
        return self.guidance > 1

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}, {self.steps} steps, batch {self.batch}"
