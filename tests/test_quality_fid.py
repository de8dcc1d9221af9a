"""FID and KID with pluggable feature extractors."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg

from diffprof.errors import ConfigError, InputError, ModelError
from diffprof.quality.detector import FEATURE_DIM
from diffprof.quality.fid import (
    InceptionFeatures,
    distribution_distance,
    extract_features,
    feature_extractor,
    fid,
    frechet_distance,
    kernel_distance,
    kid,
)
from diffprof.quality.shapes import Jitter, random_scene, render_batch


def scenes(n: int, seed: int, shape: str | None = None) -> np.ndarray:
    """``n`` random jittered scenes, optionally all of one shape."""
    rng = np.random.default_rng(seed)
    specs = [random_scene(rng) for _ in range(n)]
    if shape is not None:
        specs = [replace(s, shape=shape) for s in specs]
    return render_batch(specs, 64, Jitter.draw(rng, n))


@pytest.fixture(scope="module")
def features() -> dict[str, np.ndarray]:
    return {
        "circles_a": extract_features(scenes(150, 1, "circle")),
        "circles_b": extract_features(scenes(150, 2, "circle")),
        "squares": extract_features(scenes(150, 3, "square")),
    }


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID as in Heusel et al., with scipy's matrix square root: an independent implementation."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def reference_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic kernel (x.y/d + 1)^3 on the full sets (one 'subset')."""
    d, m = a.shape[1], len(a)
    k = lambda x, y: (x @ y.T / d + 1.0) ** 3
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )


def test_frechet_distance_matches_scipy_reference() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(400, 6)) @ np.diag([1, 2, 1, 0.5, 1, 1]) + 0.7
    assert frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)
    # Mean shift only: FID -> |delta mu|^2 for the same covariance.
    assert frechet_distance(a + 2.0, a) == pytest.approx(6 * 4.0, rel=1e-9)


def test_kernel_distance_matches_the_unbiased_mmd() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5)) + 0.5
    mean, std = kernel_distance(a, b, subsets=3, subset_size=60)
    assert mean == pytest.approx(reference_kid(a, b), rel=1e-6)  # full-size subsets: permutations only
    assert std == pytest.approx(0.0, abs=1e-9)
    assert kernel_distance(a, b, subsets=10, subset_size=30, seed=4) == kernel_distance(
        a, b, subsets=10, subset_size=30, seed=4
    )


def test_identical_sets_are_at_distance_zero(features) -> None:
    f = features["circles_a"]
    assert f.shape == (150, FEATURE_DIM)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    same_kid, _ = kernel_distance(f, f, subsets=20, subset_size=100)
    different_kid, _ = kernel_distance(f, features["squares"], subsets=20, subset_size=100)
    assert abs(same_kid) < 0.05 * different_kid


def test_different_scene_distributions_are_much_further_apart(features) -> None:
    same = frechet_distance(features["circles_a"], features["circles_b"])
    different = frechet_distance(features["circles_a"], features["squares"])
    assert different > 4 * same > 0
    kid_same, _ = kernel_distance(features["circles_a"], features["circles_b"], subsets=20, subset_size=100)
    kid_different, _ = kernel_distance(features["circles_a"], features["squares"], subsets=20, subset_size=100)
    assert kid_different > 0.02 and kid_different > 10 * abs(kid_same)


def test_image_level_api_agrees_with_feature_level(features) -> None:
    a, b = scenes(40, 11), scenes(40, 12, "triangle")
    fa, fb = extract_features(a), extract_features(b)
    assert fid(a, b) == pytest.approx(frechet_distance(fa, fb), rel=1e-9)
    assert kid(a, b, subsets=5, subset_size=20) == pytest.approx(
        kernel_distance(fa, fb, subsets=5, subset_size=20), rel=1e-9
    )
    result = distribution_distance(a, b, kid_subsets=5, kid_subset_size=1000)  # subset size capped at 40
    assert result.fid == pytest.approx(frechet_distance(fa, fb), rel=1e-9)
    assert (result.n_generated, result.n_reference, result.features) == (40, 40, "shapes")
    cached = distribution_distance(a, fb, reference_is_features=True, kid_subsets=5)
    assert cached == result
    assert set(result.metrics()) == {"fid_shapes", "kid_shapes"}


def test_custom_extractor_plugs_in() -> None:
    class MeanColour:
        name, dim = "mean-colour", 3

        def __call__(self, images):
            return np.asarray(images, np.float64).mean(axis=(1, 2))

    a, b = scenes(30, 1), scenes(30, 2)
    result = distribution_distance(a, b, MeanColour(), kid_subsets=3)
    assert result.features == "mean-colour"
    assert result.fid == pytest.approx(reference_fid(MeanColour()(a), MeanColour()(b)), rel=1e-6)


def test_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'shapes'"):
        feature_extractor("shape")
    with pytest.raises(InputError, match="at least 2"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(InputError, match="same D"):
        kernel_distance(np.zeros((5, 4)), np.zeros((5, 3)))


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity installed")
def test_inception_without_torch_fidelity_names_the_offline_alternative() -> None:
    with pytest.raises(ModelError) as err:
        InceptionFeatures()
    assert "torch-fidelity" in err.value.message
    assert "shapes" in (err.value.hint or "")
    with pytest.raises(ModelError):
        feature_extractor("inception")
