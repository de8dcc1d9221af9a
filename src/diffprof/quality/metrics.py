"""Reference-based quality: how far an output is from what a better solve gives.

An optimisation (fewer steps, another scheduler, fp16, a compiled UNet) is only a win if its
images stay close to the unoptimised ones. These measures compare outputs seed by seed and work
for any model, including synthetic random-weight ones, because they need no notion of "good":

- :func:`psnr` and :func:`ssim` on decoded images (SSIM as Wang et al. 2004: Gaussian window 11,
  sigma 1.5, K1 0.01, K2 0.03, population statistics over the valid region, channels averaged;
  equal to scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``);
- :func:`latent_relative_error` on latents, before the VAE blurs differences away;
- :class:`Convergence`, which holds a reference per seed and scores candidates against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffprof.errors import InputError
from diffprof.quality.images import ImageLike, to_float_rgb

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(a: ImageLike, b: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_float_rgb(a), to_float_rgb(b)
    if x.shape != y.shape:
        raise InputError(
            f"images differ in size: {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}",
            "compare outputs generated at the same resolution",
        )
    return x, y


def psnr(a: ImageLike, b: ImageLike, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images); images on the 0-255 scale."""
    x, y = _pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D filtering of ``(H, W, C)`` keeping only fully covered pixels ('valid')."""
    k = len(window)
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=0) @ window  # (H-k+1, W, C)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ window  # (H-k+1, W-k+1, C)


def ssim_map(a: ImageLike, b: ImageLike, data_range: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM over the valid region, ``(H-10, W-10, 3)``: where two images differ in structure."""
    x, y = _pair(a, b)
    if min(x.shape[:2]) < SSIM_WINDOW:
        raise InputError(
            f"SSIM needs images at least {SSIM_WINDOW} px a side, got {x.shape[1]}x{x.shape[0]}",
            "use psnr() for tiny images",
        )
    w = _gaussian_window()
    mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
    var_x = _filter_valid(x * x, w) - mu_x**2
    var_y = _filter_valid(y * y, w) - mu_y**2
    cov = _filter_valid(x * y, w) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(a: ImageLike, b: ImageLike, data_range: float = 255.0) -> float:
    """Structural similarity in [-1, 1] (1 = identical), averaged over pixels and RGB channels."""
    return float(ssim_map(a, b, data_range).mean())


def latent_relative_error(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """``||a - b|| / ||b||`` over all elements, in float64: ``b`` is the reference latents."""
    x = torch.as_tensor(a).detach().to("cpu", torch.float64)
    y = torch.as_tensor(b).detach().to("cpu", torch.float64)
    if x.shape != y.shape:
        raise InputError(
            f"latents differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}",
            "compare latents of the same model, resolution and batch size",
        )
    norm = float(torch.linalg.vector_norm(y))
    if norm == 0.0:
        raise InputError(
            "reference latents are all zero; relative error is undefined", "pass the reference solve's latents as b"
        )
    return float(torch.linalg.vector_norm(x - y)) / norm


PerSeed = Mapping[int, Any] | Sequence[Any]


def _by_seed(values: PerSeed | None, what: str) -> dict[int, Any]:
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {int(k): v for k, v in values.items()}
    if isinstance(values, (list, tuple)) or (isinstance(values, np.ndarray) and values.ndim == 4):
        return dict(enumerate(values))
    raise InputError(f"{what} must be a mapping seed -> value or a list in seed order, got {type(values).__name__}")


def _mean(values: Mapping[int, float]) -> float:
    return float(np.mean(list(values.values()))) if values else math.nan


@dataclass(frozen=True)
class ConvergenceResult:
    """Per-seed distances of candidates from the reference, and their means.

    PSNR is ``inf`` for a seed whose image equals the reference exactly (so is its mean);
    ``latent_error`` is empty when no latents were compared.
    """

    psnr: dict[int, float]
    ssim: dict[int, float]
    latent_error: dict[int, float] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.psnr)

    @property
    def mean_psnr(self) -> float:
        return _mean(self.psnr)

    @property
    def mean_ssim(self) -> float:
        return _mean(self.ssim)

    @property
    def mean_latent_error(self) -> float:
        return _mean(self.latent_error)

    def metrics(self) -> dict[str, float]:
        """Means keyed as cell metrics: ``psnr_db``, ``ssim`` and (with latents) ``latent_rel_error``."""
        out = {"psnr_db": self.mean_psnr, "ssim": self.mean_ssim}
        if self.latent_error:
            out["latent_rel_error"] = self.mean_latent_error
        return out


class Convergence:
    """Scores candidate outputs against a reference solve (e.g. the same seeds at 100 steps).

    References and candidates are given per seed, as a mapping ``seed -> image`` (or latents) or
    a list in seed order; a candidate seed with no reference is an error, not a silent skip.
    """

    def __init__(self, reference_images: PerSeed, reference_latents: PerSeed | None = None) -> None:
        self.reference_images = _by_seed(reference_images, "reference images")
        self.reference_latents = _by_seed(reference_latents, "reference latents")
        if not self.reference_images:
            raise InputError("no reference images given", "solve the reference (high step count) for each seed first")

    def score(self, images: PerSeed, latents: PerSeed | None = None) -> ConvergenceResult:
        """PSNR, SSIM and (if latents are given on both sides) latent relative error per seed."""
        candidates = _by_seed(images, "images")
        candidate_latents = _by_seed(latents, "latents")
        missing = sorted(set(candidates) - set(self.reference_images))
        if missing:
            raise InputError(
                f"no reference image for seed(s) {missing}",
                f"reference seeds are {sorted(self.reference_images)}; generate candidates with the same seeds",
            )
        if candidate_latents:
            absent = sorted(set(candidate_latents) - set(self.reference_latents))
            if absent:
                raise InputError(
                    f"no reference latents for seed(s) {absent}",
                    "keep the reference solve's latents (output_type='latent') to compare latents",
                )
        seeds = sorted(candidates)
        return ConvergenceResult(
            psnr={s: psnr(candidates[s], self.reference_images[s]) for s in seeds},
            ssim={s: ssim(candidates[s], self.reference_images[s]) for s in seeds},
            latent_error={
                s: latent_relative_error(candidate_latents[s], self.reference_latents[s])
                for s in sorted(candidate_latents)
            },
        )
