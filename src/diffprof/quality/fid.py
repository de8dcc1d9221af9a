"""Distribution distances between a generated image set and a reference set: FID and KID.

Both compare *features* of the two sets: FID the Fréchet distance between Gaussians fitted to
them, KID the unbiased squared MMD under a cubic polynomial kernel, averaged over random subsets
(unbiased at any sample size, so small sets can be compared). The maths is torchmetrics'
(``FrechetInceptionDistance``, ``KernelInceptionDistance``), fed with features we extract
ourselves, so the extractor is pluggable:

- ``shapes`` (offline, default for ``shapes-sd``): :func:`diffprof.quality.detector.detector_features`,
  geometry, colours, attribute probabilities and colour histograms of shapes scenes;
- ``inception``: the standard Inception-v3 pool features (torchmetrics' ``NoTrainInceptionV3``),
  only where torch-fidelity and the FID Inception weights are available; numbers comparable with
  published FIDs only with this one.

A feature set can be extracted once (:func:`extract_features`) and compared many times
(:func:`frechet_distance`, :func:`kernel_distance`): a reference set is usually reused across runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from diffprof.errors import InputError, ModelError, unknown_choice
from diffprof.quality.detector import FEATURE_DIM, detector_features
from diffprof.quality.images import ImageLike, as_image_list, to_uint8_rgb

FeatureName = Literal["shapes", "inception"]
Images = Sequence[ImageLike] | np.ndarray


class FeatureExtractor(Protocol):
    """What FID/KID need from a feature extractor: a name, a width and images -> ``(N, dim)``."""

    name: str
    dim: int

    def __call__(self, images: Images) -> np.ndarray: ...


class ShapesFeatures:
    """Detector features of shapes scenes: offline, fast (~1 ms per 64 px image), no weights."""

    name = "shapes"
    dim = FEATURE_DIM

    def __call__(self, images: Images) -> np.ndarray:
        return detector_features(images)


class InceptionFeatures:
    """Inception-v3 2048-d pool features, as in published FIDs (needs torch-fidelity and its weights).

    Args:
        weights (`str`, *optional*): path to torch-fidelity's ``pt_inception-2015-12-05`` weights;
            without it torch-fidelity downloads them, which fails offline.
        batch_size (`int`, defaults to 32): images per forward pass.
    """

    name = "inception"
    dim = 2048

    def __init__(self, weights: str | None = None, batch_size: int = 32, device: str | torch.device = "cpu") -> None:
        hint = "use features='shapes' (--fid-features shapes) offline, or install torch-fidelity and pass the FID Inception weights file"
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.model = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=weights
            )
        except ModuleNotFoundError:
            raise ModelError("Inception features need torch-fidelity, which is not installed", hint) from None
        except Exception as exc:  # noqa: BLE001 - download refused, unreadable weights file: all mean "no Inception"
            raise ModelError(
                f"could not load the FID Inception weights ({type(exc).__name__}: {exc})".splitlines()[0], hint
            ) from None
        self.device = torch.device(device)
        self.model.to(self.device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: Images) -> np.ndarray:
        items = as_image_list(images)
        out = []
        for i in range(0, len(items), self.batch_size):
            batch = np.stack([to_uint8_rgb(x) for x in items[i : i + self.batch_size]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            out.append(self.model(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))


FEATURE_EXTRACTORS: dict[str, type] = {"shapes": ShapesFeatures, "inception": InceptionFeatures}


def feature_extractor(name: str = "shapes", **kwargs: object) -> FeatureExtractor:
    """The named extractor (``shapes`` or ``inception``); ``kwargs`` go to its constructor."""
    if name not in FEATURE_EXTRACTORS:
        raise unknown_choice("FID feature extractor", name, FEATURE_EXTRACTORS)
    return FEATURE_EXTRACTORS[name](**kwargs)


def extract_features(images: Images, features: str | FeatureExtractor = "shapes") -> np.ndarray:
    """``(N, dim)`` float64 features of a set of images."""
    extractor = feature_extractor(features) if isinstance(features, str) else features
    return np.asarray(extractor(images), dtype=np.float64)


class _Given(torch.nn.Module):
    """Hands torchmetrics features we already extracted (its 'custom feature extractor' hook)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check(generated: np.ndarray, reference: np.ndarray, minimum: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g, r = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
        raise InputError(
            f"feature sets must be (N, D) with the same D, got {g.shape} and {r.shape}",
            "extract both sets with the same feature extractor",
        )
    if min(len(g), len(r)) < minimum:
        raise InputError(
            f"FID/KID need at least {minimum} images per set, got {len(g)} generated and {len(r)} reference",
            "generate more images (FID is biased below a few thousand; KID is unbiased at any size)",
        )
    return torch.from_numpy(g), torch.from_numpy(r)


def frechet_distance(generated: np.ndarray, reference: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)``: ``|mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)``."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    g, r = _check(generated, reference)
    metric = FrechetInceptionDistance(feature=_Given(g.shape[1]))
    metric.update(r, real=True)
    metric.update(g, real=False)
    return max(float(metric.compute()), 0.0)


def kernel_distance(
    generated: np.ndarray, reference: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over ``subsets`` random subsets) between two feature sets ``(N, D)``.

    ``subset_size`` is capped at the smaller set's size; the subsets are drawn from ``seed`` so
    the same sets always give the same number.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    g, r = _check(generated, reference)
    size = min(subset_size, len(g), len(r))
    with warnings.catch_warnings():  # "will save all extracted features": they are already in memory
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Given(g.shape[1]), subsets=subsets, subset_size=size)
    metric.update(r, real=True)
    metric.update(g, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


@dataclass(frozen=True)
class DistributionDistance:
    """FID and KID of one generated set against one reference set, and what they were measured with."""

    fid: float
    kid: float
    kid_std: float
    features: str
    n_generated: int
    n_reference: int

    def metrics(self) -> dict[str, float]:
        """Keyed as cell metrics (``fid_<features>``, ``kid_<features>``): FIDs of different
        extractors are different quantities and must never share a column."""
        return {f"fid_{self.features}": self.fid, f"kid_{self.features}": self.kid}


def distribution_distance(
    generated: Images,
    reference: Images | np.ndarray,
    features: str | FeatureExtractor = "shapes",
    *,
    reference_is_features: bool = False,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> DistributionDistance:
    """FID and KID of ``generated`` images against ``reference`` images (or, with
    ``reference_is_features``, features extracted earlier by the same extractor)."""
    extractor = feature_extractor(features) if isinstance(features, str) else features
    gen = extract_features(generated, extractor)
    ref = np.asarray(reference, np.float64) if reference_is_features else extract_features(reference, extractor)
    kid, kid_std = kernel_distance(gen, ref, kid_subsets, kid_subset_size, seed)
    return DistributionDistance(
        fid=frechet_distance(gen, ref),
        kid=kid,
        kid_std=kid_std,
        features=extractor.name,
        n_generated=len(gen),
        n_reference=len(ref),
    )


def fid(generated: Images, reference: Images, features: str | FeatureExtractor = "shapes") -> float:
    """FID of ``generated`` against ``reference`` images with the named (or given) feature extractor."""
    return frechet_distance(extract_features(generated, features), extract_features(reference, features))


def kid(
    generated: Images,
    reference: Images,
    features: str | FeatureExtractor = "shapes",
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std) of ``generated`` against ``reference`` images."""
    return kernel_distance(
        extract_features(generated, features), extract_features(reference, features), subsets, subset_size, seed
    )
