"""A loaded pipeline and where its weights came from, plus the loading helpers every source shares."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from diffprof.errors import ModelError
from diffprof.models.families import FAMILIES, FamilySpec
from diffprof.models.presets import ModelPreset
from diffprof.models.stand_ins import stand_ins_of


@dataclass
class LoadedPipeline:
    """A pipeline and where its weights came from.

    Attributes:
        pipeline: the family's text-to-image class (``StableDiffusionPipeline``, ``FluxPipeline`` ...),
            the Inpaint class for 9-channel UNets, or a folder's own class (derive img2img/inpaint
            variants with ``pipelines.for_task`` or ``AutoPipelineFor*.from_pipe``).
        family: a registered family (``sd``, ``sdxl``, ``sd3``, ``flux``, ``pixart``, ``sana``) or ``generic``.
        preset: the preset the weights belong to (``None`` for folders and Hub ids it does not name).
        source: ``hub:<id>``, ``local:<path>``, ``single-file:<path>``, ``synthetic:<preset>`` or ``builtin:<preset>``.
        bytes_read: bytes of weight files read from disk (0 when built in memory).
        files: the weight files read.
        stand_ins: ``{tokenizer: what it stands in for}``: tokenizers that are diffprof's stand-ins for
            vocabularies it cannot ship (T5, Gemma), found on the pipeline itself, so folders
            materialized from a synthetic model report them too. Reports must show them.
    """

    pipeline: DiffusionPipeline
    family: str
    preset: ModelPreset | None
    source: str
    bytes_read: int = 0
    files: list[str] = field(default_factory=list)
    stand_ins: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.stand_ins = stand_ins_of(self.pipeline)

    def refresh(self) -> None:
        """Re-read what the pipeline's components say after one was dropped (SD3 without its T5)."""
        self.stand_ins = stand_ins_of(self.pipeline)

    @property
    def stand_in(self) -> bool:
        """Some tokenizer is a stand-in: token ids (not lengths) differ from the real model's."""
        return bool(self.stand_ins)

    @property
    def spec(self) -> FamilySpec | None:
        """The family's registry entry; ``None`` for ``generic`` pipelines."""
        return FAMILIES.get(self.family)

    @property
    def denoiser(self) -> str | None:
        """The component that runs every step: the family's, else ``transformer`` or ``unet`` if the pipeline has one."""
        if self.spec is not None:
            return self.spec.denoiser
        return next((c for c in ("transformer", "unet") if getattr(self.pipeline, c, None) is not None), None)

    @property
    def text_encoders(self) -> tuple[str, ...]:
        """Text-encoder components in pipeline order (for ``generic`` pipelines: those it has)."""
        if self.spec is not None:
            return tuple(t.component for t in self.spec.text_encoders)
        return tuple(sorted(c for c, m in self.pipeline.components.items() if c.startswith("text_encoder") and m is not None))

    @property
    def inpaint(self) -> bool:
        """The UNet is a 9-channel inpainting UNet (transformer families inpaint with their txt2img denoiser)."""
        unet: Any = getattr(self.pipeline, "unet", None)
        return bool(unet is not None and unet.config.in_channels == 9)


def check_inpaint(what: str, model_inpaint: bool, wanted: bool | None) -> None:
    if wanted is None or wanted == model_inpaint:
        return
    if wanted:
        raise ModelError(f"{what} is a text-to-image model (4-channel UNet), not an inpainting model",
                         "give a 9-channel inpainting model, or drop inpaint=True (AutoPipelineForInpainting.from_pipe "
                         "also runs inpainting with a text-to-image UNet)")
    raise ModelError(f"{what} is an inpainting model (9-channel UNet) and cannot run text-to-image",
                     "drop inpaint=False, or give a text-to-image model")


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence library warnings and per-component progress bars while loading or saving.

    A failure is reported as one ModelError line, not warnings about retries first; Hub download
    progress bars stay on (a multi-GB download needs them).
    """
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    bars = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
