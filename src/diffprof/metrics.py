"""The metric registry: every metric a cell can carry, described once.

A :class:`Metric` says what its number means (unit, which way is better), how tables name and
print it (header, format), which raw sample series it is the median of (what ``compare`` tests
for significance), whether compact views show it, and, for quality metrics, which
``RunConfig.quality`` family scores it and in which suites ``quality: [auto]`` does so. Store,
compare, analysis, tables and plots read it; a new metric is one entry in :data:`METRICS`.

Names a store written by another version may hold but this registry lacks are never an error
while rendering: :func:`metric` describes them generically from their suffix (``_s`` seconds,
``_bytes`` bytes, ``_per_s`` a rate). Only where a user names a metric (``compare --metric``)
does an unknown name raise (:func:`require`).

Consumers call the functions of this module, which read :data:`METRICS` when called; tests swap in
a copy of the registry (``monkeypatch.setattr(diffprof.metrics, "METRICS", copy)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from diffprof.errors import ConfigError, unknown_choice

Direction = Literal["lower", "higher"]
#: How a value prints: a duration, a size in binary units, a fraction as a percentage, a number
#: with an SI prefix and the unit (``1.61 TFLOP``), or a bare number (the header names its unit).
Format = Literal["seconds", "bytes", "percent", "si", "number"]
#: How a cell measured in rounds gets one value from its rounds' values: their median (times,
#: rates), their largest (memory peaks) or the first round's (what is measured once: load, first
#: call, quality scored after round 1).
Combine = Literal["median", "max", "first"]


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        name: the key in ``CellResult.metrics`` (``s_per_image``).
        unit: SI unit of the stored value (``s``, ``B``, ``1/s``, ``dB``; ``""`` for ratios and scores).
        direction: which way is better; ``None`` only for an unregistered name it cannot be told from.
        header: the table column title, unique in the registry (``s/image``, ``PSNR (dB)``).
        format: how a value prints (:data:`Format`); ``digits`` significant figures for ``si`` and ``number``.
        sample: the raw sample series behind the metric (``call_s`` behind ``s_per_image``), if any.
        key: shown in compact views (``show`` without ``--full``, ``report --format console`` in a terminal).
        quality: the ``RunConfig.quality`` family that scores it (``adherence``, ``convergence``,
            ``clip``); ``None`` for speed, memory and cost metrics.
        auto_suites: the suites in which ``quality: [auto]`` scores it (adherence only on the
            shapes model, convergence on the others; CLIP never automatically).
        help: one line on what it measures.
        combine: how the values of a cell's rounds make the cell's value (:data:`Combine`).
        registered: False for the generic description of a name the registry lacks.
    """

    name: str
    unit: str
    direction: Direction | None
    header: str
    format: Format = "number"
    digits: int = 4
    sample: str | None = None
    key: bool = False
    quality: str | None = None
    auto_suites: frozenset[str] = frozenset()
    help: str = ""
    combine: Combine = "median"
    registered: bool = True


class MetricRegistry:
    """Metrics by name, in the order tables show them; headers are unique."""

    def __init__(self, metrics: Iterable[Metric] = ()) -> None:
        self._metrics: dict[str, Metric] = {}
        for m in metrics:
            self.register(m)

    def register(self, metric: Metric) -> Metric:
        """Add ``metric`` after the others; refuses a taken name or header and incomplete entries."""
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        taken = {m.header: m.name for m in self._metrics.values()}
        if metric.header in taken:
            raise ValueError(f"header {metric.header!r} of {metric.name!r} is already {taken[metric.header]!r}'s")
        if metric.direction not in get_args(Direction):
            raise ValueError(f"metric {metric.name!r} needs direction 'lower' or 'higher', not {metric.direction!r}")
        if metric.format not in get_args(Format):
            raise ValueError(f"metric {metric.name!r} has unknown format {metric.format!r}")
        if not metric.header or metric.digits < 1:
            raise ValueError(f"metric {metric.name!r} needs a header and at least one significant digit")
        if metric.auto_suites and metric.quality is None:
            raise ValueError(f"metric {metric.name!r} is scored automatically but names no quality family")
        self._metrics[metric.name] = metric
        return metric

    def copy(self) -> MetricRegistry:
        return MetricRegistry(self._metrics.values())

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics.values())

    def __len__(self) -> int:
        return len(self._metrics)

    def names(self) -> list[str]:
        return list(self._metrics)

    def get(self, name: str) -> Metric:
        """The registered metric, else a generic description inferred from the name (never raises)."""
        return self._metrics.get(name) or _generic(name)


def _generic(name: str) -> Metric:
    """What a name the registry lacks most likely is, from its suffix; header = the name."""
    if name.endswith(("_per_s", "_per_kj", "tflops")):
        return Metric(name, "", "higher", name, "number", 4, registered=False)
    if name.endswith("_bytes"):
        return Metric(name, "B", "lower", name, "bytes", combine="max", registered=False)
    if name.endswith("_s"):
        return Metric(name, "s", "lower", name, "seconds", registered=False)
    if name.endswith(("_ms", "_j")):
        return Metric(name, "", "lower", name, "number", 4, registered=False)
    return Metric(name, "", None, name, "number", 4, registered=False)


def _time(name: str, header: str, help: str, sample: str | None = None, key: bool = False, combine: Combine = "median") -> Metric:
    return Metric(name, "s", "lower", header, "seconds", sample=sample, key=key, help=help, combine=combine)


def _bytes(name: str, header: str, help: str, key: bool = False) -> Metric:
    return Metric(name, "B", "lower", header, "bytes", key=key, help=help, combine="max")


#: Suites whose question is about quality: ``quality: [auto]`` scores their cells (by convergence
#: on most models; adherence on the shapes model) and no others.
_QUALITY_SUITES = frozenset({"quality", "guidance", "tune"})
#: On the shapes model adherence needs no reference solve, so ``auto`` also scores it wherever the
#: axis changes what is drawn.
_ADHERENCE_SUITES = _QUALITY_SUITES | {"schedulers", "steps", "precision", "generation", "pipelines"}

#: Suites whose switches should keep the image: ``auto`` scores what they cost against the plain pipeline
#: (latent error first: it stays finite where a switch changes nothing, where PSNR is infinite).
_FIDELITY_SUITES = frozenset({"memory", "ablation"})

#: Every metric diffprof measures, in table order: speed, the time of each pipeline component,
#: memory, cost figures, then quality (in the order plots and ``tune`` prefer it).
METRICS = MetricRegistry([
    _time("s_per_image", "s/image", "median call time divided by the images per call", "call_s", key=True),
    Metric("steps_per_s", "1/s", "higher", "steps/s", "number", 3, "step_s", help="denoising steps per second of the loop"),
    Metric("images_per_s", "1/s", "higher", "images/s", "number", 3, "call_s", key=True, help="images per second of a call"),
    _time("s_per_call", "s/call", "median time of one pipeline call", "call_s"),
    _time("text_encode_s", "text encode", "median prompt encoding time per call", "text_encode_s"),
    _time("step_median_s", "step", "median time of one denoising step", "step_s", key=True),
    _time("vae_decode_s", "VAE decode", "median VAE decode time per call", "vae_decode_s", key=True),
    _bytes("peak_allocated_bytes", "peak alloc", "peak memory the CUDA allocator handed out", key=True),
    _bytes("peak_reserved_bytes", "peak reserved", "peak memory the CUDA allocator reserved"),
    _bytes("nvml_used_bytes", "GPU used (NVML)", "peak device memory in use as NVML reports it"),
    _bytes("host_peak_rss_bytes", "host peak RSS", "peak resident memory of the process"),
    _time("probe_s", "speed probe", "a fixed piece of work timed around each round: the machine's speed (compare adjusts times for it)"),
    _time("load_s", "load", "time to load the pipeline", combine="first"),
    _time("compile_s", "compile time", "first call less a warm call, when compiling", combine="first"),
    Metric("flops_per_image", "FLOP", "lower", "FLOP/image", "si", 3, help="floating-point operations per image"),
    Metric("achieved_tflops", "TFLOP/s", "higher", "TFLOP/s", "number", 3, help="FLOPs per call over the call time"),
    Metric("mfu", "", "higher", "MFU", "percent", key=True, help="denoising step FLOP/s over the measured matmul peak"),
    Metric("energy_j_per_image", "J", "lower", "J/image", "number", 3, help="GPU energy per image (NVML)"),
    Metric("images_per_kj", "1/kJ", "higher", "images/kJ", "number", 3, help="images per kilojoule of GPU energy"),
    _time("first_call_s", "first call", "the first call: compile, capture and lazy initialisation", combine="first"),
    Metric("unet_evals", "", "lower", "denoiser evals", "number", 4,
           help="denoiser evaluations per call (UNet or transformer forwards; the name predates transformers)"),
    _time("vae_encode_s", "VAE encode", "median VAE encode time per call (img2img, inpaint)", "vae_encode_s"),
    Metric("adherence", "", "higher", "adherence", "number", 4, "adherence", key=True, quality="adherence", combine="first",
           auto_suites=_ADHERENCE_SUITES, help="fraction of prompted shape attributes the detector finds"),
    Metric("clip_score", "", "higher", "CLIP score", "number", 4, "clip_score", key=True, quality="clip", combine="first",
           help="CLIP image-text similarity x 100"),
    Metric("psnr_db", "dB", "higher", "PSNR (dB)", "number", 4, "psnr_db", key=True, quality="convergence", combine="first",
           auto_suites=_QUALITY_SUITES, help="PSNR against a reference solve"),
    Metric("ssim", "", "higher", "SSIM", "number", 4, "ssim", key=True, quality="convergence", combine="first",
           auto_suites=_QUALITY_SUITES, help="SSIM against a reference solve"),
    Metric("latent_rel_error", "", "lower", "latent error", "number", 4, "latent_rel_error", quality="convergence", combine="first",
           auto_suites=_QUALITY_SUITES, help="relative L2 error of the final latents against a reference solve"),
    Metric("fidelity_latent_error", "", "lower", "latent err vs plain", "number", 4, quality="fidelity", combine="first",
           auto_suites=_FIDELITY_SUITES, help="relative L2 error of the cell's final latents against the same call without its switches"),
    Metric("fidelity_psnr_db", "dB", "higher", "PSNR vs plain (dB)", "number", 4, quality="fidelity", combine="first",
           auto_suites=_FIDELITY_SUITES, help="PSNR of the cell's image against the same call without its switches (same seed; inf: identical)"),
])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# What consumers call (each reads METRICS when called)


def metric(name: str) -> Metric:
    """The metric ``name`` (generic when unregistered: rendering an old store never fails)."""
    return METRICS.get(name)


def known(name: str) -> bool:
    return name in METRICS


def require(name: str, available: Iterable[str] = ()) -> Metric:
    """The metric a user named: registered or among ``available`` (what the data holds).

    Raises:
        ConfigError: neither; the hint lists ``available`` (every registered name when empty)
            and the closest one.
    """
    available = set(available)
    if name in METRICS or name in available:
        return METRICS.get(name)
    raise unknown_choice("metric", name, available or METRICS.names(), ConfigError)


def direction_of(name: str) -> Direction:
    """Whether lower or higher values of ``name`` are better.

    Raises:
        ConfigError: ``name`` is unregistered and not shaped like a time, size or rate.
    """
    direction = METRICS.get(name).direction
    if direction is None:
        raise ConfigError(
            f"cannot tell whether higher or lower {name!r} is better",
            "pass direction='lower' or 'higher' (--direction on the command line)",
        )
    return direction


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` in registry order, then the unregistered ones by name."""
    names = set(names)
    order = [m.name for m in METRICS if m.name in names]
    return order + sorted(names - set(order))


def key_metrics() -> tuple[str, ...]:
    """The metrics compact views show (time, throughput, components, memory, MFU, quality)."""
    return tuple(m.name for m in METRICS if m.key)


def quality_metrics() -> tuple[str, ...]:
    """Quality metrics in the order plots and ``tune`` prefer them."""
    return tuple(m.name for m in METRICS if m.quality is not None)


def memory_metrics() -> tuple[str, ...]:
    """Memory metrics in order of preference for plots (the allocator's peak is the honest one)."""
    return tuple(m.name for m in METRICS if m.unit == "B")


def auto_quality_suites(family: str) -> frozenset[str]:
    """The suites in which ``quality: [auto]`` scores the metrics of ``family``."""
    return frozenset().union(*(m.auto_suites for m in METRICS if m.quality == family))
