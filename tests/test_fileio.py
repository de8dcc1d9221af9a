"""Atomic writes: the shared compile and reference caches are written by several workers at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from diffprof.fileio import write_bytes_atomic


def test_concurrent_writers_leave_one_whole_file_and_no_temporaries(tmp_path):
    path = tmp_path / "cache" / "k.bin"
    blobs = [bytes([i]) * 2_000_000 for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: write_bytes_atomic(path, b), blobs))
    assert path.read_bytes() in blobs
    assert [p.name for p in path.parent.iterdir()] == ["k.bin"]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    path = write_bytes_atomic(tmp_path / "k.bin", b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["k.bin"]
