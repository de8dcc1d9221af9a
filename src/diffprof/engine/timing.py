"""Per-component timing of one call, derived from its profiler records (plain data, no measuring)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from diffprof.profiler import OperationRecord
from diffprof.stats import SampleStats

#: Span names of one denoiser evaluation (the component's own name; see engine.instrument).
DENOISER_SPANS = ("unet", "transformer")


@dataclass
class CallTiming:
    """Seconds per component of one pipeline call: GPU time (CUDA events) where recorded, else
    host wall time; ``total_s`` is always synchronized wall time.

    ``steps_s`` has one entry per loop iteration of the denoising loop (what ``callback_on_step_end``
    sees: ``steps`` for first-order solvers, PNDM one more, Heun/DPM2 about twice as many).
    ``unet_s`` has one entry per denoiser evaluation (the UNet's or the transformer's forward), and
    ``text_encode_by`` the seconds of each text encoder (``text_encoder_3``: SD3's T5), summing to
    ``text_encode_s``; ``denoiser_calls`` counts evaluations even when ``minimal`` profiling records
    no per-evaluation spans.
    """

    total_s: float
    images: int
    text_encode_s: float = 0.0
    text_encode_by: dict[str, float] = field(default_factory=dict)
    vae_encode_s: float = 0.0
    vae_decode_s: float = 0.0
    steps_s: list[float] = field(default_factory=list)
    steps_wall_s: list[float] = field(default_factory=list)
    unet_s: list[float] = field(default_factory=list)
    steps_gpu_s: list[float] = field(default_factory=list)
    total_gpu_s: float | None = None
    #: A graphed loop has no per-step records: its one span and step count stand in for them.
    loop_s: float | None = None
    loop_steps: int = 0
    denoiser_calls: int = 0
    peak_allocated: int | None = None
    peak_reserved: int | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return len(self.steps_s) or self.loop_steps

    @property
    def denoise_s(self) -> float:
        if not self.steps_s and self.loop_s is not None:
            return self.loop_s
        return sum(self.steps_s)

    @property
    def step_median_s(self) -> float:
        if not self.steps_s and self.loop_s is not None and self.loop_steps:
            return self.loop_s / self.loop_steps  # a mean: a graph replays all steps as one launch
        return SampleStats.from_samples(self.steps_s).median  # nan without steps

    @property
    def other_s(self) -> float:
        """Time not in a named component: prompt preparation, latents setup, postprocessing."""
        return self.total_s - self.text_encode_s - self.vae_encode_s - self.denoise_s - self.vae_decode_s

    @property
    def s_per_image(self) -> float:
        return self.total_s / self.images

    @property
    def steps_per_s(self) -> float:
        return self.n_steps / self.denoise_s if self.denoise_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(denoise_s=self.denoise_s, step_median_s=self.step_median_s, other_s=self.other_s, n_steps=self.n_steps)
        return data


def timing_from_records(outer: OperationRecord | None, records: list[OperationRecord], total_ns: int, images: int,
                        denoiser_calls: int = 0) -> CallTiming:
    """Sum each component's records below ``outer`` (the call's own operation)."""
    timing = CallTiming(total_s=total_ns / 1e9, images=images, denoiser_calls=denoiser_calls)
    if outer is None:
        return timing
    mine = _descendants(outer, records)
    for r in mine:
        # On CUDA, host wall time of a component is only its launch time; the GPU's own time
        # (CUDA events) is what the component costs.
        s = (r.gpu_ns if r.gpu_ns is not None else r.wall_ns) / 1e9
        if r.name == "text_encoding":
            timing.text_encode_s += s
            component = str(r.labels.get("component", "text_encoder"))
            timing.text_encode_by[component] = timing.text_encode_by.get(component, 0.0) + s
        elif r.name == "vae_encode":
            timing.vae_encode_s += s
        elif r.name == "vae_decode":
            timing.vae_decode_s += s
        elif r.name == "denoising_step":
            timing.steps_s.append(s)
            timing.steps_wall_s.append(r.wall_ns / 1e9)
            if r.gpu_ns is not None:
                timing.steps_gpu_s.append(r.gpu_ns / 1e9)
        elif r.name in DENOISER_SPANS:
            timing.unet_s.append(s)
        elif r.name == "denoising_loop":
            timing.loop_s = (timing.loop_s or 0.0) + s
            timing.loop_steps += int(r.labels.get("steps", 0))
    if outer.gpu_ns is not None:
        timing.total_gpu_s = outer.gpu_ns / 1e9
    timing.peak_allocated = outer.allocated_peak
    timing.peak_reserved = outer.reserved_peak
    gpu = outer.gpu_start_ns is not None
    timing.timeline = [
        {
            "name": r.name,
            "start_s": ((r.gpu_start_ns - outer.gpu_start_ns) if gpu and r.gpu_start_ns is not None else (r.start_ns - outer.start_ns)) / 1e9,
            "dur_s": (r.gpu_ns if gpu and r.gpu_ns is not None else r.wall_ns) / 1e9,
            "step": r.labels.get("step"),
            "gpu_s": None if r.gpu_ns is None else r.gpu_ns / 1e9,
            "depth": r.depth - outer.depth,
        }
        for r in sorted(mine, key=lambda r: r.start_ns)
    ]
    return timing


def _descendants(root: OperationRecord, records: list[OperationRecord]) -> list[OperationRecord]:
    """Every record under ``root``, in the order they opened (ids count up at entry): per-step
    series such as ``unet_s`` must line up with ``steps_s``; a depth-first walk gave them last
    step first."""
    children: dict[int | None, list[OperationRecord]] = {}
    for r in records:
        children.setdefault(r.parent_id, []).append(r)
    out: list[OperationRecord] = []
    todo = [root.id]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.id)
    return sorted(out, key=lambda r: r.id)
