"""PSNR, SSIM, latent relative error and the Convergence helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffprof.errors import InputError
from diffprof.quality.metrics import (
    Convergence,
    latent_relative_error,
    psnr,
    ssim,
    ssim_map,
)
from diffprof.quality.shapes import dataset, degrade


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    images, _ = dataset(6, seed=4, size=64)
    return images, degrade(images, np.random.default_rng(0), noise=12.0, blur=1.0, color_shift=10.0, blobs=2)


def test_psnr_matches_its_definition(pairs) -> None:
    a, b = pairs
    for x, y in zip(a, b):
        mse = np.mean((x.astype(float) - y.astype(float)) ** 2)
        assert psnr(x, y) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    assert psnr(a[0], a[0]) == math.inf
    # A uniform error of 1 level: 20 log10(255) = 48.13 dB.
    assert psnr(np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 101, np.uint8)) == pytest.approx(
        48.1308, abs=1e-4
    )


def test_psnr_matches_scikit_image(pairs) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = pairs
    for x, y in zip(a, b):
        assert psnr(x, y) == pytest.approx(metrics.peak_signal_noise_ratio(x, y, data_range=255), rel=1e-12)


def test_ssim_matches_scikit_image_reference(pairs) -> None:
    """Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, population statistics, channels averaged."""
    metrics = pytest.importorskip("skimage.metrics")
    a, b = pairs
    for x, y in zip(a, b):
        ref = metrics.structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        )
        assert ssim(x, y) == pytest.approx(ref, abs=1e-10)
    gray_a, gray_b = a[0, :, :, 0], b[0, :, :, 0]
    ref = metrics.structural_similarity(
        gray_a, gray_b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(gray_a, gray_b) == pytest.approx(ref, abs=1e-10)  # grayscale: repeated channels, same mean


def test_ssim_properties(pairs) -> None:
    a, b = pairs
    assert ssim(a[0], a[0]) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a[0], b[0]) == pytest.approx(ssim(b[0], a[0]), abs=1e-12)  # symmetric
    mild = degrade(a[:1], np.random.default_rng(1), noise=3.0, blur=0.0, color_shift=0.0, blobs=0)[0]
    assert ssim(a[0], mild) > ssim(a[0], b[0])  # less damage, more similar
    assert -1.0 <= ssim(a[0], 255 - a[0]) < 0.5
    assert ssim_map(a[0], b[0]).shape == (54, 54, 3)


def test_metrics_accept_pil_and_float_images(pairs) -> None:
    a, b = pairs
    pil_a, pil_b = Image.fromarray(a[1]), Image.fromarray(b[1])
    assert psnr(pil_a, pil_b) == psnr(a[1], b[1])
    assert ssim(pil_a, pil_b) == pytest.approx(ssim(a[1], b[1]), abs=1e-12)
    assert psnr(a[1] / 255.0, b[1] / 255.0) == pytest.approx(psnr(a[1], b[1]), rel=1e-9)


def test_metric_input_errors(pairs) -> None:
    a, _ = pairs
    with pytest.raises(InputError, match="differ in size"):
        psnr(a[0], a[0][:32])
    with pytest.raises(InputError, match="at least 11 px"):
        ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError):
        ssim(torch.zeros(3, 64, 64), torch.zeros(3, 64, 64))  # type: ignore[arg-type]


def test_latent_relative_error() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 4, 8, 8, generator=g)
    assert latent_relative_error(ref, ref) == 0.0
    assert latent_relative_error(ref * 1.1, ref) == pytest.approx(0.1, rel=1e-6)  # 1.1 * ref rounds in float32
    noise = torch.randn(1, 4, 8, 8, generator=g)
    candidate = ref + noise
    expected = float((candidate.double() - ref.double()).norm() / ref.double().norm())
    assert latent_relative_error(candidate, ref) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(float(noise.norm() / ref.norm()), rel=1e-5)
    assert latent_relative_error(candidate.half(), ref) == pytest.approx(expected, rel=1e-2)  # fp16 candidates
    with pytest.raises(InputError, match="shape"):
        latent_relative_error(ref, ref[:, :2])
    with pytest.raises(InputError, match="zero"):
        latent_relative_error(ref, torch.zeros_like(ref))


def test_convergence_per_seed_and_means(pairs) -> None:
    a, b = pairs
    g = torch.Generator().manual_seed(1)
    ref_latents = {s: torch.randn(4, 8, 8, generator=g) for s in range(3)}
    conv = Convergence({s: a[s] for s in range(3)}, ref_latents)
    result = conv.score({0: b[0], 2: a[2]}, {0: ref_latents[0] * 1.5, 2: ref_latents[2]})
    assert result.seeds == [0, 2]
    assert result.psnr[0] == pytest.approx(psnr(b[0], a[0]))
    assert result.psnr[2] == math.inf and result.ssim[2] == pytest.approx(1.0)
    assert result.ssim[0] == pytest.approx(ssim(b[0], a[0]))
    assert result.latent_error == pytest.approx({0: 0.5, 2: 0.0})
    assert result.mean_ssim == pytest.approx((result.ssim[0] + 1.0) / 2)
    assert result.mean_latent_error == pytest.approx(0.25)
    assert result.metrics()["latent_rel_error"] == pytest.approx(0.25)
    assert set(result.metrics()) == {"psnr_db", "ssim", "latent_rel_error"}


def test_convergence_accepts_lists_in_seed_order(pairs) -> None:
    a, b = pairs
    result = Convergence(list(a[:3])).score(list(b[:3]))
    assert result.seeds == [0, 1, 2] and result.latent_error == {}
    assert result.mean_psnr == pytest.approx(np.mean([psnr(b[i], a[i]) for i in range(3)]))
    assert "latent_rel_error" not in result.metrics()
    # Converging: candidates closer to the reference score better.
    closer = degrade(a[:3], np.random.default_rng(2), noise=2.0, blur=0.0, color_shift=0.0, blobs=0)
    better = Convergence(list(a[:3])).score(list(closer))
    assert better.mean_psnr > result.mean_psnr and better.mean_ssim > result.mean_ssim


def test_convergence_refuses_unmatched_seeds(pairs) -> None:
    a, b = pairs
    conv = Convergence({0: a[0], 1: a[1]})
    with pytest.raises(InputError, match=r"seed\(s\) \[5\]"):
        conv.score({5: b[0]})
    with pytest.raises(InputError, match="latents"):
        conv.score({0: b[0]}, {0: torch.ones(4)})
    with pytest.raises(InputError):
        Convergence({})
