"""Warm starts: torch.compile artifacts saved per (model, shape, settings, torch version, GPU) so a
second process does not pay the compile again.

``torch.compiler.save_cache_artifacts()`` packs what inductor produced (FX graph cache, autotuning
results, AOTAutograd cache) into one blob; ``load_cache_artifacts`` seeds the local caches with it
before compiling, after which only Dynamo's tracing remains. The blob is a plain file under
``$DIFFPROF_CACHE_DIR`` (default ``~/.cache/diffprof/compile``), so it can be copied to other machines
with the same GPU and torch version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from diffprof.engine.anatomy import vae_of
from diffprof.fileio import write_bytes_atomic


def cache_dir() -> Path:
    return Path(os.environ.get("DIFFPROF_CACHE_DIR", Path.home() / ".cache" / "diffprof")) / "compile"


def cache_key(pipe: Any, optimizations: str, precision: str, extra: dict[str, Any] | None = None) -> str:
    """Identity of a compiled configuration: architecture, settings, torch and GPU."""
    # a diffusion transformer keys under the same name; no `or`: a compiled module's truth value is its len()
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    denoiser = getattr(denoiser, "_orig_mod", denoiser)
    parts = {
        "unet": _architecture(denoiser.config),
        "vae": _architecture(getattr(vae_of(pipe), "config", {})),
        "optimizations": optimizations,
        "precision": precision,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "numerics": numerics(),
        **(extra or {}),
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def numerics() -> dict[str, Any]:
    """Process-wide math settings that inductor puts in its own cache keys. A blob compiled under
    other settings (say ``allow_tf32`` on) loads but matches none of the graphs, and the first call
    compiles cold while reporting warm; keying on them gives such a process its own blob."""
    matmul = torch.backends.cuda.matmul
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "fp16_reduced_precision_reduction": matmul.allow_fp16_reduced_precision_reduction,
        "bf16_reduced_precision_reduction": matmul.allow_bf16_reduced_precision_reduction,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


def graph_cache_counts() -> tuple[int, int]:
    """Inductor's FX-graph cache (hits, misses) so far in this process: a miss after a load means
    the loaded artifacts did not cover that graph and it compiled anew."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return int(inductor["fxgraph_cache_hit"]), int(inductor["fxgraph_cache_miss"])


def _architecture(config: Any) -> dict[str, Any]:
    """Config fields that define the architecture; diffusers' private ``_*`` entries are
    bookkeeping (``_use_default_values`` is even built from a set, so its order changes per process)."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def load(key: str) -> bool:
    """Seed torch's compile caches from a saved blob; True when one was found and loaded."""
    path = cache_dir() / f"{key}.bin"
    if not path.is_file() or not hasattr(torch.compiler, "load_cache_artifacts"):
        return False
    try:
        info = torch.compiler.load_cache_artifacts(path.read_bytes())
    except Exception:  # a blob from another torch build: ignore it, compile cold
        return False
    return info is not None  # torch returns None (and logs why) for a blob it cannot read


def save(key: str) -> Path | None:
    """Write what torch compiled in this process so far; None when nothing is there to save."""
    if not hasattr(torch.compiler, "save_cache_artifacts"):
        return None
    artifacts = torch.compiler.save_cache_artifacts()
    if artifacts is None:
        return None
    return write_bytes_atomic(cache_dir() / f"{key}.bin", artifacts[0])  # workers of one sweep may save the same key at once


def after_first_call(info: Any, key: str, counts_at_load: tuple[int, int]) -> None:
    """After an engine's first call: save what a cold process compiled; check that a warm one really
    compiled nothing (a blob from other settings loads, yet misses every graph) and, if it did
    compile, say so and save again so the next process starts warm. ``info`` is the engine's
    :class:`~diffprof.engine.request.LoadInfo` (its ``compile_cache`` says what happened)."""
    if info.compile_cache == "warm":
        hits, misses = (now - before for now, before in zip(graph_cache_counts(), counts_at_load))
        if not misses:
            return
        info.compile_cache = f"warm, but {misses} of {hits + misses} graphs compiled anew (the saved artifacts did not match them)"
        try:
            save(key)
        except Exception:  # noqa: BLE001 - the note above already says this process compiled
            pass
        return
    try:
        path = save(key)
        info.compile_cache = f"cold (saved {path})" if path else "cold (nothing to save)"
    except Exception as exc:  # a cache that cannot be written costs the next process time, nothing else
        info.compile_cache = f"cold (not saved: {type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
