"""What a cell's switches cost in quality: its own output against the plain pipeline's, same call.

A memory or speed switch should change nothing (offloading, tiling within rounding) or a little
(float8 storage, int8 weights, fp8 matmuls, no T5). Fidelity scores that cost on the cell's first
timed call itself, so it adds no generation to the cell: the final latents (relative L2 error) and
the decoded image (PSNR) against the same request (prompt, seed, size, steps, scheduler, guidance) on
the same model, weights, device and precision with no switches at all. The plain reference is solved
once per run (:class:`~diffprof.quality.scoring.QualityCache`, and on disk with ``reference_cache``):
a plain engine is loaded beside the cell's, run once and closed; a cell that has no switches is its
own reference. A reference that cannot be solved (the plain model does not fit beside the cell's)
leaves the cell measured and says why.
"""

from __future__ import annotations

from typing import Any

from diffprof.config import RunConfig
from diffprof.engine import Engine, GenerationRequest, GenerationResult

#: The metric names fidelity writes, from the convergence scorer's.
RENAMES = {"psnr_db": "fidelity_psnr_db", "latent_rel_error": "fidelity_latent_error"}


def fidelity_key(engine: Engine, config: RunConfig, request: GenerationRequest, result: GenerationResult) -> dict[str, Any]:
    """Everything that decides the plain reference of a timed call."""
    import diffusers

    s = result.settings
    return {"reference": "plain", "model": engine.model, "weights": config.weights, "source": engine.load_info.source, "precision": engine.precision,
            "device": engine.device.type, "task": request.task, "prompt": request.prompt, "negative_prompt": request.negative_prompt,
            "seed": request.seed, "width": s["width"], "height": s["height"], "batch": s["batch"], "guidance": float(request.guidance),
            "scheduler": request.scheduler, "steps": request.steps, "strength": request.strength, "image": request.image, "mask": request.mask,
            "weights_seed": config.seed, "diffusers": diffusers.__version__}


def solve_plain(engine: Engine, config: RunConfig, request: GenerationRequest, result: GenerationResult) -> Any:
    """The reference: this cell's own result when it has no switches, else one call of a plain engine."""
    from diffprof.engine.switches import Optimizations
    from diffprof.profiler import Profiler
    from diffprof.quality.images import to_uint8_rgb
    from diffprof.quality.scoring import Reference, _latents

    if engine.optimizations == Optimizations():
        return Reference(image=to_uint8_rgb(result.images[0]), latents=_latents(result))
    plain = Engine.load(engine.model, config.weights, device=engine.device, precision=engine.precision, seed=config.seed,
                        allow_pickle=config.allow_pickle, profiler=Profiler("minimal", device=engine.device))
    try:
        out = plain.generate(request)
        return Reference(image=to_uint8_rgb(out.images[0]), latents=_latents(out))
    finally:
        plain.close()


def score_fidelity(engine: Engine, config: RunConfig, cache: Any, request: GenerationRequest, result: GenerationResult) -> tuple[dict[str, float], dict[str, Any]]:
    """``({fidelity_psnr_db, fidelity_latent_error}, about)`` of a timed ``result`` against its plain reference."""
    from diffprof.quality.images import to_uint8_rgb
    from diffprof.quality.metrics import Convergence
    from diffprof.quality.scoring import _latents

    if not result.images:
        return {}, {"fidelity": "not scored: the call decoded no image"}
    try:
        ref = cache.reference(fidelity_key(engine, config, request, result), lambda: solve_plain(engine, config, request, result))
    except Exception as exc:  # noqa: BLE001 - a reference that cannot be solved must not lose the measured cell
        return {}, {"fidelity": f"not scored: the plain reference failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"}
    latents = _latents(result)
    with_latents = ref.latents is not None and latents is not None and tuple(ref.latents.shape) == tuple(latents.shape)
    scored = Convergence({0: ref.image}, {0: ref.latents} if with_latents else None).score(
        {0: to_uint8_rgb(result.images[0])}, {0: latents} if with_latents else None)
    metrics = {RENAMES[k]: v for k, v in scored.metrics().items() if k in RENAMES}
    return metrics, {"fidelity": f"against the plain pipeline (no switches), {engine.precision}, same call and seed {request.seed}"}
