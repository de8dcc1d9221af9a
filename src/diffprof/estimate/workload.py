"""What is asked of the pipeline: one call of a given task, size, step count, batch, guidance and scheduler."""

from __future__ import annotations

from dataclasses import dataclass

from diffprof.config import check_size
from diffprof.errors import ConfigError


@dataclass(frozen=True)
class Workload:
    """One call: ``batch`` images of ``width`` x ``height`` pixels in ``steps`` denoising steps.

    ``guidance`` > 1 runs classifier-free guidance in CFG families, which doubles the denoiser batch
    (both halves in one forward) and the text-encoder batch; FLUX's distilled guidance costs nothing.
    ``scheduler`` decides how many denoiser calls ``steps`` make (Heun, DPM2: about two per step;
    ``default``: the model's own); ``task`` img2img or inpaint adds VAE encodes of the init image and
    runs only the last ``strength`` of the steps.
    """

    width: int
    height: int
    steps: int
    batch: int = 1
    guidance: float = 7.5
    scheduler: str = "default"
    task: str = "txt2img"
    strength: float = 1.0

    def __post_init__(self) -> None:
        check_size("width", self.width)
        check_size("height", self.height)
        for name in ("steps", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", f"e.g. --{name} 1")
        if not 0 < self.strength <= 1:
            raise ConfigError(f"strength must be in (0, 1], got {self.strength!r}", "e.g. --strength 0.75 (1: every step runs)")

    @property
    def guided(self) -> bool:
        return self.guidance > 1

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def encodes(self) -> bool:
        """Whether the call encodes an init image (img2img, inpaint)."""
        return self.task != "txt2img"

    @property
    def label(self) -> str:
        text = f"{self.width}x{self.height}, {self.steps} steps, batch {self.batch}"
        if self.scheduler != "default":
            text += f", {self.scheduler}"
        if self.task != "txt2img":
            text += f", {self.task}" + (f" at strength {self.strength:g}" if self.strength < 1 else "")
        return text
