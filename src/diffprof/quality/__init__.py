"""Quality measures that go next to speed: an optimisation is only a win if quality holds.

- :mod:`~diffprof.quality.metrics`: PSNR, SSIM, latent relative error and :class:`Convergence`
  against a reference solve; any model, including random-weight synthetic ones.
- :mod:`~diffprof.quality.clip_score`: CLIP score (needs a CLIP model: hub id or local folder).
- :mod:`~diffprof.quality.fid`: FID/KID with a pluggable feature extractor (``shapes`` offline,
  ``inception`` where its weights are available).
- :mod:`~diffprof.quality.scoring`: which of these a benchmark cell is scored on, on which fixed
  (prompt, seed) pairs, with reference solves cached between cells (``measure_cell`` calls it).
- :mod:`~diffprof.quality.shapes` and :mod:`~diffprof.quality.detector`: the procedural scenes
  ``shapes-sd`` is trained on and the pixel detector that scores a generated image's prompt
  adherence, with no model at all.

Heavy dependencies (transformers, torchmetrics, scipy) are imported only when a measure needs them: the
names below load their submodule on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule defining it, imported on first use: ``measure_cell`` imports
#: :mod:`~diffprof.quality.scoring` for every cell, and most cells score nothing (scipy and the
#: detector cost about half a second per process).
_EXPORTS: dict[str, str] = {
    "ClipScorer": "clip_score",
    "Convergence": "metrics",
    "ConvergenceResult": "metrics",
    "Detection": "detector",
    "DistributionDistance": "fid",
    "SceneSpec": "shapes",
    "adherence": "detector",
    "adherence_details": "detector",
    "dataset": "shapes",
    "detect": "detector",
    "detector_features": "detector",
    "distribution_distance": "fid",
    "fid": "fid",
    "kid": "fid",
    "latent_relative_error": "metrics",
    "parse_prompt": "shapes",
    "prompt_for": "shapes",
    "psnr": "metrics",
    "random_scene": "shapes",
    "render_scene": "shapes",
    "ssim": "metrics",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from diffprof.quality.clip_score import ClipScorer
    from diffprof.quality.detector import Detection, adherence, adherence_details, detect, detector_features
    from diffprof.quality.fid import DistributionDistance, distribution_distance, fid, kid
    from diffprof.quality.metrics import Convergence, ConvergenceResult, latent_relative_error, psnr, ssim
    from diffprof.quality.shapes import SceneSpec, dataset, parse_prompt, prompt_for, random_scene, render_scene


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'diffprof.quality' has no attribute {name!r}")
    module = importlib.import_module(f"diffprof.quality.{_EXPORTS[name]}")
    # Bind every name the submodule exports, so the function ``fid`` wins over the submodule of
    # that name, which importing it has just set on this package.
    globals().update({n: getattr(module, n) for n, m in _EXPORTS.items() if m == _EXPORTS[name]})
    return globals()[name]
