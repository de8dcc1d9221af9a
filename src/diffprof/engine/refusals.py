"""What a pipeline no family covers can get wrong in a call, said by name instead of a traceback.

A family's entry says what its pipeline hands a scheduler and which sizes it runs as asked; a pipeline
on the generic path says neither. Three things were found on diffusers 0.42 pipelines with no preset:

- a scheduler swapped in by ``--scheduler`` fails on what the pipeline hands it: CogView4 passes
  ``timesteps`` and ``sigmas``, SANA-Sprint ``max_timesteps``, Kandinsky 3 ``step(..., generator=)``,
  Z-Image a list of sigmas a solver cannot scale. :func:`scheduler_refusal` reads the pipeline call's
  exception (the scheduler's own frames, or Python's refusal of an argument its method lacks) and
  turns it into a :class:`~diffprof.errors.ConfigError` naming the method, the argument and the fix;
- a pipeline snaps or resizes the request (HunyuanDiT's resolution bins, a VAE factor it hard-codes),
  so the timings would be of another size than the one reported: :func:`check_ran_size` refuses it;
- a size above the native one runs past a table the model sized for it (AuraFlow's and CogView3's
  position embeddings: "index 256 is out of bounds for dimension 0 with size 256"): :func:`size_refusal`
  says which size failed against which native size, and what to try.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from diffprof.errors import ConfigError, ModelError
from diffprof.models.loaded import first_line

#: Python's message when a call passes a keyword the function does not take (3.10+: qualified name).
_UNEXPECTED = re.compile(r"(\w+)\.(\w+)\(\) got an unexpected keyword argument '(\w+)'")


def check_ran_size(images: list[Any], width: int, height: int, pipeline_class: str) -> None:
    """Refuse a result whose images are not the size asked: the pipeline snapped or resized it (a
    trained-resolution table, a rounding of its own), so the timings are of another size."""
    size = getattr(images[0], "size", None) if images else None
    if isinstance(size, tuple) and size != (width, height):
        raise ModelError(f"{pipeline_class} returned {size[0]}x{size[1]} images for the {width}x{height} asked: "
                         "it resized the request, so its timings would be of another size",
                         "ask a size this pipeline runs as given (a multiple of its VAE factor x patch, within its trained sizes)")


def _failed_method(exc: BaseException, scheduler: Any) -> tuple[str, str | None] | None:
    """``(method, argument)`` when ``exc`` came from ``scheduler``: the outermost of its methods on the
    traceback, or the method Python refused an argument for (that call never got a frame)."""
    match = _UNEXPECTED.search(str(exc))
    if match and match.group(1) == type(scheduler).__name__:
        return match.group(2), match.group(3)
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_locals.get("self") is scheduler:
            return frame.f_code.co_name, None
    return None


def scheduler_refusal(exc: BaseException, scheduler: Any, name: str, pipeline_class: str, own: str, kind: Any,
                      task: str) -> ConfigError | None:
    """``exc`` (raised by a pipeline call) as the refusal of ``scheduler``, swapped in as ``name`` for the
    pipeline's ``own`` scheduler, when it came from that scheduler; ``None`` when it did not. Where the
    scheduler refused an argument, the hint names the schedulers of this ``kind`` and ``task`` whose
    method takes it."""
    from diffprof.engine.schedulers import taking

    found = _failed_method(exc, scheduler)
    if found is None:
        return None
    method, argument = found
    cls = type(scheduler).__name__
    hint = f"use --scheduler default (the pipeline's own {own})"
    if argument is not None:
        what = f"the pipeline hands {cls}.{method} {argument}, which it does not take"
        others = [n for n in taking(kind, task, method, argument) if n != name]
        hint += f"; schedulers whose {method} takes {argument}: {', '.join(others)}" if others else ""
    else:
        what = f"{cls}.{method} failed on what the pipeline hands it ({type(exc).__name__}: {first_line(exc)})"
    return ConfigError(f"scheduler {name} cannot run {pipeline_class}: {what}", hint)


def size_refusal(exc: BaseException, width: int, height: int, native: int, pipeline_class: str) -> ModelError | None:
    """``exc`` (raised by a pipeline call at ``width`` x ``height``) as a refusal of that size, when it is
    larger than the pipeline's ``native`` one and the error is an indexing or tensor-shape one; else ``None``."""
    if max(width, height) <= native or not isinstance(exc, (IndexError, RuntimeError)):
        return None
    return ModelError(f"{pipeline_class} failed at {width}x{height}, larger than its native {native}x{native} ({type(exc).__name__}: {first_line(exc)})",
                      f"a model's position table or trained sizes can end near its native size: try --width/--height {native}, "
                      "or check pos_embed_max_size / sample_size in its denoiser's config")


@contextmanager
def generic_call(anatomy: Any, scheduler: Any, name: str, own: str, task: str, width: int, height: int) -> Iterator[None]:
    """Around the call of a pipeline no family covers (``anatomy.spec`` is ``None``; elsewhere nothing
    changes): an error from ``scheduler`` (swapped in as ``name`` for the pipeline's ``own``) becomes
    :func:`scheduler_refusal`'s ConfigError, an indexing or shape error above the native size
    :func:`size_refusal`'s ModelError; any other error passes unchanged."""
    try:
        yield
    except (TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        refused: Exception | None = None
        if anatomy.spec is None:
            from diffprof.engine.schedulers import DEFAULT

            if name != DEFAULT:
                refused = scheduler_refusal(exc, scheduler, name, anatomy.pipeline_class, own, anatomy.scheduler_kind, task)
            native = max(anatomy.native_size, anatomy.size_multiple)  # a size the pipeline can be asked for
            refused = refused or size_refusal(exc, width, height, native, anatomy.pipeline_class)
        if refused is None:
            raise
        raise refused from exc
