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

Heavy dependencies (transformers, torchmetrics) are imported only when a measure needs them.
"""

from diffprof.quality.clip_score import ClipScorer
from diffprof.quality.detector import Detection, adherence, adherence_details, detect, detector_features
from diffprof.quality.fid import DistributionDistance, distribution_distance, fid, kid
from diffprof.quality.metrics import Convergence, ConvergenceResult, latent_relative_error, psnr, ssim
from diffprof.quality.shapes import SceneSpec, dataset, parse_prompt, prompt_for, random_scene, render_scene

__all__ = [
    "ClipScorer",
    "Convergence",
    "ConvergenceResult",
    "Detection",
    "DistributionDistance",
    "SceneSpec",
    "adherence",
    "adherence_details",
    "dataset",
    "detect",
    "detector_features",
    "distribution_distance",
    "fid",
    "kid",
    "latent_relative_error",
    "parse_prompt",
    "prompt_for",
    "psnr",
    "random_scene",
    "render_scene",
    "ssim",
]
