"""Quality scoring of a measured cell: which metrics, on which (prompt, seed) pairs, against which references.

Quality (issue #5) is scored after the timed repeats, on images of its own: ``quality_prompts``
fixed (prompt, seed) pairs generated with the cell's settings, so it never adds to a measured
time and every cell of every run is scored on the same prompts and noise (paired comparisons).
Reference solves for convergence are kept in a :class:`QualityCache`, one per run (or per
worker), and optionally on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffprof.config import RunConfig
from diffprof.engine import Engine, GenerationRequest, GenerationResult
from diffprof.errors import ConfigError, DiffprofError
from diffprof.fileio import write_bytes_atomic
from diffprof.metrics import auto_quality_suites

if TYPE_CHECKING:
    from diffprof.quality.clip_score import ClipScorer

#: Suites whose question is about quality: ``quality: [auto]`` scores their cells and no others
#: (a resolutions or batch sweep should not pay for images it does not need). From the metric
#: registry, which says per metric where ``auto`` scores it.
AUTO_QUALITY_SUITES = auto_quality_suites("convergence")
#: On shapes-sd adherence needs no reference solve, so ``auto`` also scores the suites whose axis
#: changes what is drawn (the quick suite then shows real quality beside speed).
AUTO_ADHERENCE_SUITES = auto_quality_suites("adherence")
#: Suites whose switches are meant to keep the image: ``auto`` scores what they cost against the plain
#: pipeline on the cell's own timed call (:mod:`diffprof.quality.fidelity`).
AUTO_FIDELITY_SUITES = auto_quality_suites("fidelity")
#: The built-in model trained on shapes scenes; ``auto`` scores it by prompt adherence.
SHAPES_MODEL = "shapes-sd"
#: Quality seeds are ``QUALITY_SEED + i``: apart from the timing seed (default 0) and fixed, so
#: every cell of every run scores the same noise.
QUALITY_SEED = 10_000
#: Seed of the scene draw behind the shapes prompts; training draws start at small seeds.
SCENE_SEED = 20_261_126


def quality_metrics(config: RunConfig, suite: str) -> tuple[str, ...]:
    """The metric families to score for a cell of ``suite`` (``auto`` resolved), in a fixed order."""
    names = list(config.quality)
    if not names or names == ["none"]:
        return ()
    if names == ["auto"]:
        if suite in AUTO_FIDELITY_SUITES:
            return ("fidelity",)  # no extra call per cell: the timed call against one plain reference per run
        if config.model == SHAPES_MODEL and suite in AUTO_ADHERENCE_SUITES:
            return ("adherence",)  # cheap (a few calls, no reference solve): worth it wherever it means something
        if suite not in AUTO_QUALITY_SUITES:
            return ()
        return ("adherence",) if config.model == SHAPES_MODEL else ("convergence",)
    return tuple(n for n in ("adherence", "convergence", "clip", "fidelity") if n in names)


def quality_pairs(config: RunConfig, metrics: Sequence[str]) -> list[tuple[str, int]]:
    """The ``(prompt, seed)`` pairs a cell is scored on.

    Adherence needs shapes prompts, so when it is scored the prompts are random shapes scenes
    (a fixed draw; the first k of n pairs are the same whatever n is); otherwise every pair
    uses the cell's own prompt with its own seed.
    """
    n = config.quality_prompts
    if "adherence" in metrics:
        from diffprof.quality.shapes import prompt_for, random_scene

        rng = np.random.default_rng(SCENE_SEED)
        prompts = [prompt_for(random_scene(rng)) for _ in range(n)]
    else:
        prompts = [config.prompt] * n
    return [(p, QUALITY_SEED + i) for i, p in enumerate(prompts)]


@dataclass
class Reference:
    """One reference solve: the decoded image (uint8 HWC) and the final latents (float32, CPU)."""

    image: np.ndarray
    latents: torch.Tensor | None


class QualityCache:
    """What quality scoring keeps between cells: reference solves and loaded CLIP models.

    References live in memory for the cache's lifetime (one run) and, with ``folder``, on disk
    as ``<sha1 of the key>.npz``, so later runs and isolated workers skip the solve. The key
    holds everything that decides the reference image (model, weights, precision, device type,
    task, prompt, seed, size, guidance, reference scheduler and steps, diffusers version); a
    local model folder whose weights change needs its cached references deleted.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else None
        self.references: dict[str, Reference] = {}
        self.clip_scorers: dict[str, ClipScorer] = {}
        #: How many references were solved (not found in memory or on disk): what caching saved.
        self.solved = 0

    def reference(self, key: dict[str, Any], solve: Callable[[], Reference]) -> Reference:
        """The reference for ``key``: from memory, else from disk, else ``solve()`` (then stored)."""
        blob = json.dumps(key, sort_keys=True, default=str)
        digest = hashlib.sha1(blob.encode()).hexdigest()
        if digest in self.references:
            return self.references[digest]
        path = self.folder / f"{digest}.npz" if self.folder else None
        ref = _load_reference(path, blob) if path is not None else None
        if ref is None:
            ref = solve()
            self.solved += 1
            if path is not None:
                _save_reference(path, blob, ref)
        self.references[digest] = ref
        return ref

    def clip_scorer(self, model: str, device: torch.device) -> ClipScorer:
        if model not in self.clip_scorers:
            from diffprof.quality.clip_score import ClipScorer

            self.clip_scorers[model] = ClipScorer(model, device=device)
        return self.clip_scorers[model]


def _load_reference(path: Path, key: str) -> Reference | None:
    """A reference saved by :func:`_save_reference`, or None when absent, unreadable or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            latents = torch.from_numpy(data["latents"].copy()) if "latents" in data.files else None
            return Reference(image=data["image"].copy(), latents=latents)
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged file costs a re-solve, never the cell


def _save_reference(path: Path, key: str, ref: Reference) -> None:
    """Write atomically so a concurrent reader never sees half a file."""
    arrays: dict[str, Any] = {"key": np.array(key), "image": ref.image}
    if ref.latents is not None:
        arrays["latents"] = ref.latents.numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def reference_scheduler(engine: Engine, config: RunConfig) -> str:
    """The scheduler of the cell's reference solves: ``config.reference_scheduler``, except that the
    default (``dpmpp_2m``, a noise-schedule solver) becomes its flow-matching counterpart on a
    flow-matching model (``flow_dpmpp_2m``; ``flow_euler`` where the pipeline sets its own sigmas, as
    FLUX does). A reference the user chose is kept (and refused up front when it does not apply)."""
    from diffprof.engine.schedulers import for_reference

    name = config.reference_scheduler
    if name != RunConfig.default_of("reference_scheduler"):
        return name
    return for_reference(name, engine.anatomy.scheduler_kind)


def reference_key(engine: Engine, config: RunConfig, prompt: str, seed: int, width: int, height: int) -> dict[str, Any]:
    """Everything that decides a reference solve's image (see :class:`QualityCache`)."""
    import diffusers

    key: dict[str, Any] = {
        "model": engine.model, "weights": config.weights, "source": engine.load_info.source, "precision": engine.precision,
        "device": engine.device.type, "task": config.task, "prompt": prompt, "negative_prompt": config.negative_prompt,
        "seed": seed, "width": width, "height": height, "guidance": float(config.guidance),
        "scheduler": reference_scheduler(engine, config), "steps": config.reference_steps, "diffusers": diffusers.__version__,
    }
    if config.task != "txt2img":
        key.update(strength=config.strength, image=config.image, mask=config.mask)
    return key


def _latents(result: GenerationResult) -> torch.Tensor | None:
    return result.latents.detach().to("cpu", torch.float32).clone() if result.latents is not None else None


def reference_failed(exc: Exception, scheduler: str, steps: int) -> ConfigError:
    """What a failed reference solve raises: not the cell's own call (that ran at the cell's settings) but
    the convergence reference at ``steps`` steps, which a model may refuse (SANA-Sprint takes 2 steps only)."""
    what = exc.message if isinstance(exc, DiffprofError) else f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return ConfigError(f"the quality reference solve ({scheduler}, {steps} steps) failed: {what}",
                       "this cell's own call ran; set reference_steps (and reference_scheduler) in a --config file to what this model "
                       "takes, or quality: [none] to skip quality scoring")


@dataclass
class QualityScore:
    """A cell's quality: metric means, the per-image values behind them, and what was scored."""

    metrics: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    about: dict[str, Any] = field(default_factory=dict)


def score_quality(engine: Engine, config: RunConfig, metrics: Sequence[str], cache: QualityCache, request: GenerationRequest,
                  timed: GenerationResult | None = None) -> QualityScore:
    """Generate the quality images with the cell's settings (``request``, the cell's timed call) and score them.

    Phases: 0. fidelity of the cell's first ``timed`` call against the plain pipeline's (no
    generation of its own); 1. one call per (prompt, seed) at batch 1; 2. adherence per image against
    its prompt; 3. convergence against the cached (or newly solved) reference of each pair; 4. CLIP
    score per (image, prompt). Metric names: ``fidelity_psnr_db``, ``fidelity_latent_error``,
    ``adherence``, ``psnr_db``, ``ssim``, ``latent_rel_error``, ``clip_score``; ``samples`` keep one
    value per image.
    """
    fidelity: tuple[dict[str, float], dict[str, Any]] = ({}, {})
    if "fidelity" in metrics and timed is not None:
        from diffprof.quality.fidelity import score_fidelity

        fidelity = score_fidelity(engine, config, cache, request, timed)
    metrics = [m for m in metrics if m != "fidelity"]
    if not metrics:
        return QualityScore(metrics=fidelity[0], about={"metrics": ["fidelity"], **fidelity[1]})
    pairs = quality_pairs(config, metrics)
    base = replace(request, num_images=1)
    # 1. The cell's own images, batch 1, one per pair.
    outputs = [engine.generate(replace(base, prompt=p, seed=s)) for p, s in pairs]
    images = [o.images[0] for o in outputs]
    width, height = outputs[0].settings["width"], outputs[0].settings["height"]
    out = QualityScore(metrics=dict(fidelity[0]), about={
        "metrics": list(metrics) + (["fidelity"] if fidelity[0] or fidelity[1] else []),
        "prompts": len(pairs),
        "prompt_set": "shapes scenes" if "adherence" in metrics else "the cell prompt",
        "seeds": [pairs[0][1], pairs[-1][1]],
        **fidelity[1],
    })
    # 2. Adherence: the pixel detector reads the scene back and checks the prompt's five attributes.
    if "adherence" in metrics:
        from diffprof.quality.detector import adherence

        values = [adherence(image, prompt) for image, (prompt, _) in zip(images, pairs)]
        out.samples["adherence"] = values
        out.metrics["adherence"] = float(np.mean(values))
    # 3. Convergence against the reference solve of each pair.
    if "convergence" in metrics:
        from diffprof.quality.images import to_uint8_rgb
        from diffprof.quality.metrics import Convergence

        ref_scheduler = reference_scheduler(engine, config)

        def solve(prompt: str, seed: int) -> Reference:
            try:
                ref = engine.generate(replace(base, prompt=prompt, seed=seed, scheduler=ref_scheduler, steps=config.reference_steps))
            except torch.OutOfMemoryError:
                raise  # the cell's memory handling reads it
            except (ValueError, TypeError, RuntimeError) as exc:
                raise reference_failed(exc, ref_scheduler, config.reference_steps) from exc
            return Reference(image=to_uint8_rgb(ref.images[0]), latents=_latents(ref))

        refs = [cache.reference(reference_key(engine, config, p, s, width, height), partial(solve, p, s)) for p, s in pairs]
        seeds = [s for _, s in pairs]
        with_latents = all(r.latents is not None for r in refs) and all(o.latents is not None for o in outputs)
        convergence = Convergence(
            {s: r.image for s, r in zip(seeds, refs)},
            {s: r.latents for s, r in zip(seeds, refs)} if with_latents else None,
        )
        result = convergence.score(
            {s: image for s, image in zip(seeds, images)},
            {s: _latents(o) for s, o in zip(seeds, outputs)} if with_latents else None,
        )
        out.metrics.update(result.metrics())
        out.samples["psnr_db"] = [result.psnr[s] for s in seeds]
        out.samples["ssim"] = [result.ssim[s] for s in seeds]
        if result.latent_error:
            out.samples["latent_rel_error"] = [result.latent_error[s] for s in seeds]
        out.about["reference"] = f"{ref_scheduler}, {config.reference_steps} steps, {engine.precision}"
    # 4. CLIP score of each image against its own prompt.
    if "clip" in metrics:
        if not config.clip_model:
            raise ConfigError("quality metric clip needs a CLIP model", "set clip_model (--clip-model) to a local CLIP folder or a hub id")
        scorer = cache.clip_scorer(config.clip_model, engine.device)
        values = scorer.score(images, [p for p, _ in pairs])
        out.samples["clip_score"] = values
        out.metrics["clip_score"] = float(np.mean(values))
        out.about["clip_model"] = config.clip_model
    return out
