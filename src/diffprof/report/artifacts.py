"""Reading the small binary outputs a cell keeps: its first image and one call's step timeline.

Artifacts come from disk or a store written by another version; a damaged one must cost the
report one figure, never the whole report, so readers here return ``None`` instead of raising.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffprof.results import CellResult

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_ARTIFACT = "image.png"
TIMELINE_ARTIFACT = "timeline.json"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Span:
    """One span of a call: ``start_s`` relative to the call's start; ``gpu_s`` when CUDA timed it."""

    name: str
    start_s: float
    dur_s: float
    step: int | None = None
    gpu_s: float | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def parse_timeline(data: bytes | str | Sequence[Any]) -> list[Span] | None:
    """Spans from ``timeline.json`` (a JSON list of span objects), sorted by start; ``None`` if
    the data is not such a list. Entries without a name, a start or a duration are skipped."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(data, list):
        return None
    spans = []
    for item in data:
        if not isinstance(item, dict):
            continue
        start, dur = _number(item.get("start_s")), _number(item.get("dur_s"))
        if not isinstance(item.get("name"), str) or start is None or dur is None or dur < 0:
            continue
        step = item.get("step")
        spans.append(
            Span(
                name=item["name"],
                start_s=start,
                dur_s=dur,
                step=int(step) if isinstance(step, int) and not isinstance(step, bool) else None,
                gpu_s=_number(item.get("gpu_s")),
            )
        )
    return sorted(spans, key=lambda s: s.start_s) or None


def cell_timeline(cell: CellResult) -> list[Span] | None:
    raw = cell.artifacts.get(TIMELINE_ARTIFACT)
    return parse_timeline(raw) if raw else None


def cell_image(cell: CellResult) -> Image | None:
    """The cell's first generated image, decoded; ``None`` when absent or not a readable PNG."""
    raw = cell.artifacts.get(IMAGE_ARTIFACT)
    if not raw or not raw.startswith(_PNG_SIGNATURE):
        return None
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return image.convert("RGB")
