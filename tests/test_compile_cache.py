"""Warm starts: compile artifacts saved by one process seed a second process's compile."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from diffprof.engine import compile_cache
    torch.set_num_threads(1)
    loaded = compile_cache.load("k")
    # a graph of one extern matmul: inductor writes no C++ kernel for it, so neither process spends ~9 s
    # in gcc (a kernel is rebuilt from its source even when its graph comes from a saved blob)
    f = torch.compile(lambda x: torch.mm(x, x.t()))
    t0 = time.perf_counter(); f(torch.randn(8, 8)); dt = time.perf_counter() - t0
    saved = compile_cache.save("k") if not loaded else None
    print(loaded, saved is not None, round(dt, 2))
    """
)


def run(tmp_path, inductor_dir):
    env = dict(os.environ, DIFFPROF_CACHE_DIR=str(tmp_path / "dp"), TORCHINDUCTOR_CACHE_DIR=str(inductor_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, saved, seconds = out.stdout.split()
    return loaded == "True", saved == "True", float(seconds)


@pytest.mark.slow  # two processes, each importing torch and compiling with inductor (~4 s each)
def test_second_process_loads_saved_artifacts(tmp_path):
    loaded, saved, _ = run(tmp_path, tmp_path / "inductor-a")
    assert not loaded and saved
    assert list((tmp_path / "dp" / "compile").glob("k.bin"))
    # a fresh inductor cache: only diffprof's saved blob can make this process warm
    loaded, saved, _ = run(tmp_path, tmp_path / "inductor-b")
    assert loaded and not saved


def test_missing_or_corrupt_blob_means_cold(tmp_path, monkeypatch):
    from diffprof.engine import compile_cache

    monkeypatch.setenv("DIFFPROF_CACHE_DIR", str(tmp_path))
    assert compile_cache.load("nothing") is False
    (tmp_path / "compile").mkdir()
    (tmp_path / "compile" / "bad.bin").write_bytes(b"not a cache")
    assert compile_cache.load("bad") is False


def test_cache_key_is_stable_across_processes():
    """This process and another one, with another string-hash seed (diffusers builds part of a
    config from a set, whose order follows the seed), give the same key."""
    from diffprof.engine.compile_cache import cache_key
    from diffprof.models.sources import load_pipeline

    code = "from diffprof.models.sources import load_pipeline; from diffprof.engine.compile_cache import cache_key; print(cache_key(load_pipeline('tiny-sd').pipeline, 'compile', 'fp32'))"
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONHASHSEED=seed))
    assert there.returncode == 0, there.stderr[-2000:]
    here = cache_key(load_pipeline("tiny-sd").pipeline, "compile", "fp32")
    assert there.stdout.strip() == here and len(here) == 20


def test_cache_key_follows_the_math_settings_inductor_keys_on():
    """A blob compiled with TF32 matmuls matches no graph of a process without them: another key."""
    import torch

    from diffprof.engine import compile_cache
    from diffprof.models.sources import load_pipeline

    pipe = load_pipeline("tiny-sd").pipeline
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        highest = compile_cache.cache_key(pipe, "compile", "fp32")
        torch.set_float32_matmul_precision("high")
        high = compile_cache.cache_key(pipe, "compile", "fp32")
    finally:
        torch.set_float32_matmul_precision(before)
    assert highest != high and compile_cache.numerics()["float32_matmul_precision"] == before


def test_a_warm_start_that_still_compiled_says_so_and_saves_again(monkeypatch):
    """'warm' means the first call compiled nothing: inductor cache misses after a load turn the
    note into how many graphs compiled anew, and the blob is saved again for the next process."""
    from diffprof.engine import Engine, compile_cache

    engine = Engine.load("tiny-sd", device="cpu")
    engine.load_info.compile_cache = "warm"
    saved: list[str] = []
    monkeypatch.setattr(compile_cache, "save", lambda key: saved.append(key))
    monkeypatch.setattr(compile_cache, "graph_cache_counts", lambda: (13, 4))
    compile_cache.after_first_call(engine.load_info, "k", (10, 4))
    assert engine.load_info.compile_cache == "warm" and saved == []
    monkeypatch.setattr(compile_cache, "graph_cache_counts", lambda: (11, 6))
    compile_cache.after_first_call(engine.load_info, "k", (10, 4))
    assert engine.load_info.compile_cache == "warm, but 2 of 3 graphs compiled anew (the saved artifacts did not match them)"
    assert saved == ["k"]


def test_the_key_of_a_compiled_denoiser_reads_the_module_it_wraps() -> None:
    """`-O fast` compiles the UNet before the key is taken: a compiled module (torch's OptimizedModule)
    has no truth value of its own (it forwards len()), so the key must not test it with `or`."""
    from types import SimpleNamespace

    import torch

    from diffprof.engine.compile_cache import cache_key

    unet = torch.nn.Linear(2, 2)
    unet.config = {"in_channels": 4, "_use_default_values": ["x"]}
    vae = SimpleNamespace(config={"latent_channels": 4})
    compiled = SimpleNamespace(unet=torch.compile(unet), vae=vae)
    plain = SimpleNamespace(unet=unet, vae=vae)
    assert cache_key(compiled, "fast", "fp16") == cache_key(plain, "fast", "fp16")
    transformer = SimpleNamespace(unet=None, transformer=torch.compile(unet), vae=vae)
    assert cache_key(transformer, "fast", "fp16") == cache_key(plain, "fast", "fp16")
