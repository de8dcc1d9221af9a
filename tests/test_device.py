"""Device probe: measured peaks, cache, MFU arithmetic, CLI."""

from __future__ import annotations

import pytest
import torch

from diffprof.cli import main
from diffprof.device import DevicePeaks, device_peaks, measure_peaks, mfu


def test_probe_measures_positive_ceilings():
    peaks = measure_peaks(torch.device("cpu"), quick=True)
    assert peaks.kind == "cpu" and peaks.matmul_flops["fp32"] > 1e8 and peaks.copy_bytes_per_s > 1e8


@pytest.fixture(scope="module")
def probe_cache(tmp_path_factory):
    """One cache folder for the module: the full probe is measured once (by the first test here),
    and the CLI test reads the cached peaks instead of measuring them again."""
    return tmp_path_factory.mktemp("device-cache")


def test_cached_probe_is_reused(probe_cache, monkeypatch):
    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(probe_cache))
    first = device_peaks(torch.device("cpu"))
    assert list((probe_cache / "device").glob("*.json"))
    assert device_peaks(torch.device("cpu")).measured_at == first.measured_at


def test_mfu_is_achieved_over_peak():
    peaks = DevicePeaks(name="x", kind="cuda", matmul_flops={"fp16": 1e15})
    assert mfu(2e12, 0.004, peaks, "fp16") == 0.5
    assert mfu(1.0, 0.0, peaks, "fp16") is None


def test_cli_prints_the_table(probe_cache, monkeypatch, capsys):
    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(probe_cache))
    assert main(["device", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "dense matmul fp32" in out and "GB/s" in out
