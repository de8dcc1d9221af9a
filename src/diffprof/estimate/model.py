"""The cost model: per-phase time and peak memory, fitted on a calibration, predicted for any workload.

Time of one call (each part a relative least-squares fit on the calibration points, see
:mod:`diffprof.estimate.regression`; FLOPs and decoder calls from :mod:`diffprof.estimate.architecture`)::

    text_encode = a_t (+) FLOPs_text / throughput_t
    step        = a_s (+) FLOPs_denoiser_eval / throughput_s  (x denoising loop iterations; UNet or transformer)
    vae_decode  = a_v * decoder_calls (+) FLOPs_decode / throughput_v
    other       = a_o + b_o * pixels * batch                (set-up, scheduler, post-processing)
    time        = load + text_encode + iterations * step + vae_decode + other

The overheads ``a`` are what makes small workloads launch- or interpreter-bound; ``throughput`` is
the achieved FLOP/s once they are not. ``(+)`` is ``(x^k + y^k)^(1/k)`` with ``k`` chosen per part by
leave-one-out error: 1 where overhead and compute add up (a CPU), larger where they overlap (a GPU
computes while the host launches: a small step costs its launches, a large one its FLOPs). Load time
is measured, not modelled.

Peak memory: a call runs three phases (text encoders, UNet steps, VAE decode); the peak is reached in
one of them::

    peak = baseline + max over phases (resident weights + k * traced activation bytes)

``k`` (allocator overhead, workspaces, kernels' temporaries relative to the meta-device trace) and
``baseline`` (CPU: the Python/torch runtime; CUDA: small buffers, latents) are fitted; weights and
activations are exact for the architecture.

Optimizations the calibration did not run are derived, never silently (each derived part says so):

- ``vae_slicing`` / ``vae_tiling`` / ``attention_slicing`` / ``eager_attention``: activation bytes
  traced with the switch applied (tiling caps the VAE term at one tile; slicing at one image);
  VAE time from the calibrated per-call overhead x decoder calls + FLOPs (tile overlaps included);
  UNet time unchanged per FLOP (sliced attention is often slower in practice, diffusers #4518).
- ``model_cpu_offload``: each phase holds only its own component's weights; every component is
  moved to the GPU and back once per call, at :data:`H2D_BYTES_PER_S`.
- ``sequential_cpu_offload``: only the largest single layer is resident; every forward streams its
  component's weights once (the UNet once per step, the VAE decoder once per tile).

A calibration that itself used an offload mode is used only for that mode (its fitted overheads
already contain the transfers). The switches for big models that change where weights live or how
they are stored (group offload, T5 offloaded or dropped, int8 weights, float8 storage, fp8) are not
derived: calibrate with them (:data:`UNMODELLED`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from diffprof.engine.switches import Optimizations
from diffprof.errors import ConfigError
from diffprof.estimate.architecture import Architecture, Features
from diffprof.estimate.calibration import MEMORY_METRICS, Calibration, CalibrationPoint
from diffprof.estimate.calls import denoiser_calls
from diffprof.estimate.regression import OVERLAPS, LinearFit, OverheadFit, fit_overhead, fit_relative, log_interval, t_quantile
from diffprof.estimate.result import MEASURED, Basis, Component, Estimate, Interval, MemoryPart
from diffprof.estimate.workload import Workload
from diffprof.estimate.phases import UNMODELLED, fit_memory, other_row, peak_phase, phases, step_row, text_row, vae_row

#: Host-to-device copy speed assumed for offload modes that were not calibrated (pageable memory
#: over PCIe 4/5 x16 reaches 10-25 GB/s; 12 GB/s errs on the slow side).
H2D_BYTES_PER_S = 12e9
#: A workload this far outside the calibrated range (relative) counts as extrapolated.
RANGE_TOLERANCE = 0.02
#: Fits whose relative residual spread exceeds this get a warning.
POOR_FIT = 0.15
#: Fewest successful calibration cells a fit is attempted on.
MIN_POINTS = 3


def can_fit(loads: Sequence[int]) -> bool:
    """Whether workloads of these sizes (pixels x batch, one per cell) are enough to fit on: at
    least :data:`MIN_POINTS` of them, of at least two different sizes."""
    return len(loads) >= MIN_POINTS and len(set(loads)) >= 2


@dataclass
class CostModel:
    """Fitted time and memory model of one calibration (see the module docstring for the maths)."""

    calibration: Calibration
    architecture: Architecture
    calibrated: Optimizations
    text: OverheadFit
    step: OverheadFit
    vae: OverheadFit
    other: LinearFit
    memory: LinearFit | None
    load_s: tuple[float, ...]
    eval_offset: int
    pixel_range: tuple[int, int]
    batch_range: tuple[int, int]
    guided: bool
    #: VAE encode time, fitted where the calibration measured it (an inpainting model's); else derived.
    encode: OverheadFit | None = None

    @property
    def key(self) -> Any:
        return self.calibration.key

    @property
    def points(self) -> list[CalibrationPoint]:
        return self.calibration.points

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, calibration: Calibration, architecture: Architecture | None = None, overlaps: CostModel | None = None) -> CostModel:
        """Fit every part on ``calibration``'s points (at least :data:`MIN_POINTS` of them).

        ``overlaps``: take each part's overlap exponent from this model instead of choosing it again
        (leave-one-out fits keep the structure of the full one; four points cannot choose it).
        """
        key = calibration.key
        points = calibration.points
        if not can_fit([p.workload.pixels * p.workload.batch for p in points]):
            raise ConfigError(
                f"calibration run {calibration.run_id} has {len(points)} usable cell(s) for {key.describe()}; "
                f"a fit needs at least {MIN_POINTS} of different sizes or batches",
                f"re-run: {key.command()}" + (f" (failed cells: {'; '.join(calibration.failed)})" if calibration.failed else ""),
            )
        arch = architecture or Architecture.for_model(key.model)
        opts = Optimizations.parse(key.switches)
        feats = [arch.features(p.workload, key.precision, opts) for p in points]
        def k(part: str) -> Any:
            return (getattr(overlaps, part).k,) if overlaps is not None else OVERLAPS

        text = fit_overhead([text_row(f) for f in feats], [p.text_s for p in points], ("per_call", "flops"), k("text"))
        step = fit_overhead([step_row(f) for f in feats], [p.step_s for p in points], ("per_step", "flops"), k("step"))
        vae = fit_overhead([vae_row(f) for f in feats], [p.vae_s for p in points], ("per_decoder_call", "flops"), k("vae"))
        other = fit_relative([other_row(f) for f in feats], [max(p.other_s, 1e-6) for p in points], ("per_call", "pixels_x_batch"))
        memory = fit_memory(points, feats, opts)
        encoded = [(p, f.encode) for p, f in zip(points, feats) if f.encode is not None and p.encode_s > 0]
        encode = None
        if len(encoded) == len(points):
            encode = fit_overhead([[float(e.calls), e.flops] for _, e in encoded], [p.encode_s for p, _ in encoded], ("per_encoder_call", "flops"))
        pixels = [p.workload.pixels for p in points]
        batches = [p.workload.batch for p in points]
        offsets = [p.unet_evals - p.workload.steps for p in points]
        return cls(
            calibration=calibration,
            architecture=arch,
            calibrated=opts,
            text=text,
            step=step,
            vae=vae,
            other=other,
            memory=memory,
            load_s=tuple(p.load_s for p in points),
            eval_offset=int(statistics.median(offsets)),
            pixel_range=(min(pixels), max(pixels)),
            batch_range=(min(batches), max(batches)),
            guided=all(p.workload.guided for p in points),
            encode=encode,
        )

    # ------------------------------------------------------------------ predicting
    def predict(self, workload: Workload, optimizations: Optimizations | None = None) -> Estimate:
        """Time and peak memory of ``workload`` under ``optimizations`` (default: the calibrated set)."""
        target = optimizations if optimizations is not None else self.calibrated
        self._check_derivable(target)
        key = self.key
        f = self.architecture.features(workload, key.precision, target)
        notes: list[str] = []
        same_vae = (target.vae_slicing, target.vae_tiling) == (self.calibrated.vae_slicing, self.calibrated.vae_tiling)
        same_attention = target.attention == self.calibrated.attention
        same_offload = target.offload == self.calibrated.offload
        # 1. Time, part by part (mean and variance of a new observation).
        iterations, counted = denoiser_calls(workload, self.calibration.scheduler, self.eval_offset, getattr(self.architecture, "scheduler_config", None))
        parts: list[tuple[str, float, float, str, str]] = []
        m, v = self.text.mean(text_row(f)), self.text.variance(text_row(f))
        parts.append(("text_encode", m, v, MEASURED, ""))
        if f.encode is not None:  # img2img / inpaint: the init image through the VAE encoder
            row = [float(f.encode.calls), f.encode.flops]
            fit = self.encode or self.vae
            source = MEASURED if self.encode is not None else "modelled: the VAE decoder's fitted overhead per call and FLOP throughput, on the encoder's FLOPs"
            parts.append(("vae_encode", fit.mean(row), fit.variance(row), source, f"{f.encode.calls} encoder call(s) at batch 1"))
        m, v = self.step.mean(step_row(f)), self.step.variance(step_row(f))
        step_source = MEASURED if same_attention else f"modelled: {target.attention} attention, same FLOPs as {self.calibrated.attention}"
        if counted is not None:
            step_source = f"modelled: {counted}" + ("" if same_attention else f"; {target.attention} attention, same FLOPs")
        parts.append(("denoise", iterations * m, iterations**2 * v, step_source, f"{iterations} denoiser calls x {_ms(m)}"))
        m, v = self.vae.mean(vae_row(f)), self.vae.variance(vae_row(f))
        vae_source = MEASURED if same_vae else "modelled: calibrated decoder overhead x decoder calls + FLOP throughput"
        parts.append(("vae_decode", m, v, vae_source, f"{f.vae.calls} decoder call(s)"))
        m, v = self.other.mean(other_row(f)), self.other.variance(other_row(f))
        parts.append(("other", m, v, MEASURED, "set-up, scheduler, post-processing"))
        if not same_offload:
            moved = self._transfer_bytes(f, target, iterations)
            parts.append(("offload_transfer", moved / H2D_BYTES_PER_S, 0.0,
                          f"modelled: {moved / 1e9:.2f} GB host-to-device at {H2D_BYTES_PER_S / 1e9:.0f} GB/s", ""))
        dof = min(fit.dof for fit in (self.text, self.step, self.vae, self.other))
        t = t_quantile(dof)
        call = sum(p[1] for p in parts)
        components = [Component(name, mean, Interval(*log_interval(mean, var, t)), source, detail) for name, mean, var, source, detail in parts]
        load = statistics.median(self.load_s)
        components.insert(0, Component("load", load, Interval(min(self.load_s), max(self.load_s)), MEASURED, "median of the calibration's loads"))
        call_interval = Interval(*log_interval(call, sum(p[2] for p in parts), t))
        total_interval = Interval(call_interval.low + min(self.load_s), call_interval.high + max(self.load_s))
        # 2. Peak memory.
        peak, peak_interval, memory_parts, phase = self._memory(f, target, same_vae and same_attention and same_offload)
        phase = self._phase_name(phase)
        # 3. Range checks and provenance.
        warnings = self._range_warnings(workload)
        if workload.guided != self.guided:
            notes.append("guidance differs from the calibration's: UNet and text FLOPs and activations account for it")
        fits: tuple[tuple[str, LinearFit | OverheadFit | None], ...] = (("step time", self.step), ("VAE time", self.vae), ("peak memory", self.memory))
        for fit_name, fit in fits:
            if fit is not None and fit.sigma > POOR_FIT:
                warnings.append(f"the {fit_name} fit is loose (residuals {fit.sigma:.0%}); recalibrate with more repeats")
        if self.calibration.busy:
            warnings.append(f"calibrated on a busy host ({self.calibration.busy}): its times include other work, so these are likely "
                            f"too high; recalibrate on a quiet host: {key.command()}")
        if self.calibration.disagreeing:
            warnings.append(f"calibration cell(s) {', '.join(self.calibration.disagreeing)} disagreed with the other cells' fit when measured "
                            "twice: the cost model may not describe those workloads (see their calibration notes: diffprof show)")
        if self.calibration.failed:
            warnings.append(f"{len(self.calibration.failed)} calibration cell(s) failed and are left out: {'; '.join(self.calibration.failed)}")
        derived = [c for c in components if c.source != MEASURED] + [p for p in memory_parts if p.source != MEASURED]
        if derived:
            notes.append(f"{target.label} was not calibrated; derived from the {self.calibrated.label} calibration: "
                         + "; ".join(f"{d.name} {d.source}" for d in derived))
        else:
            notes.append(f"every part is fitted on measurements of {target.label}")
        return Estimate(
            model=key.model,
            device=key.device,
            precision=key.precision,
            optimizations=target.label,
            workload=workload,
            time_s=load + call,
            interval=total_interval,
            call_s=call,
            call_interval=call_interval,
            components=components,
            peak_bytes=peak,
            peak_interval=peak_interval,
            memory_parts=memory_parts,
            memory_metric=MEMORY_METRICS.get(key.device, "peak_allocated_bytes"),
            peak_phase=phase,
            extrapolated=bool([w for w in warnings if "beyond the calibrated" in w]),
            warnings=warnings,
            notes=notes,
            basis=self.basis,
        )

    @property
    def basis(self) -> Basis:
        cal = self.calibration
        return Basis(
            run_id=cal.run_id,
            created_at=cal.created_at,
            environment=cal.environment,
            cell_ids=tuple(p.cell_id for p in cal.points if p.cell_id is not None),
            points=tuple(p.label for p in cal.points),
            optimizations=self.calibrated.label,
            failed=tuple(cal.failed),
        )

    def _check_derivable(self, target: Optimizations) -> None:
        changed = [name for name, field in UNMODELLED.items() if getattr(target, field[0]) == field[1] and getattr(self.calibrated, field[0]) != field[1]]
        if changed:
            raise ConfigError(f"the calibration of {self.calibrated.label} cannot predict {target.label}: "
                              f"estimate does not derive {' or '.join(changed)} (weights placed or stored differently)",
                              f"calibrate with them: {replace(self.key, optimizations=target.label).command()}")
        if self.calibrated.offload != "none" and target.offload != self.calibrated.offload:
            raise ConfigError(
                f"the calibration of {self.calibrated.label} cannot predict {target.label}: its times include offload transfers",
                f"calibrate without offload: {replace(self.key, optimizations='none').command()}",
            )
        if target.offload != "none" and self.key.device == "cpu":
            raise ConfigError(f"{target.offload}_cpu_offload needs a CUDA device", "drop the offload switch on the CPU")

    def _transfer_bytes(self, f: Features, target: Optimizations, iterations: int) -> float:
        if target.offload == "model":  # every component on and off the device once per call
            return 2 * f.weight_bytes
        # sequential: each forward streams its component's weights (the decoder once per tile)
        return f.text.weight_bytes + iterations * f.unet.weight_bytes + f.vae.calls * f.vae.weight_bytes

    def _memory(self, f: Features, target: Optimizations, measured: bool) -> tuple[float, Interval, list[MemoryPart], str]:
        if self.memory is None:
            nan = float("nan")
            return nan, Interval(nan, nan), [], ""
        baseline, k = self.memory.coef
        phase = peak_phase(f, target, k)
        resident, activation = phases(f, target)[phase]
        named = self._phase_name(phase)
        row = [1.0, activation]
        peak = self.memory.mean(row, offset=resident)
        low, high = self.memory.interval(row, offset=resident)
        source = MEASURED if measured else f"modelled: {target.label} traced on the meta device, k and baseline from {self.calibrated.label}"
        weight_source = MEASURED if target.offload == self.calibrated.offload else f"modelled: {target.offload} offload keeps this resident"
        memory_parts = [
            MemoryPart("weights", resident, weight_source, f"resident during {named}"),
            MemoryPart("activations", k * activation, source, f"{k:.2f} x {activation / 2**20:.1f} MiB traced in {named}"),
            MemoryPart("baseline", baseline, MEASURED, "runtime and buffers outside the phases" if self.key.device == "cpu" else "buffers outside the phases"),
        ]
        return peak, Interval(low, high), memory_parts, phase

    def _phase_name(self, phase: str) -> str:
        """The denoiser's phase by its component's name (``unet``, ``transformer``) for reports."""
        name = getattr(self.architecture, "phase_name", None)
        return name(phase) if name is not None and phase else phase

    def _range_warnings(self, w: Workload) -> list[str]:
        out = []
        lo, hi = self.pixel_range
        if w.pixels < lo * (1 - RANGE_TOLERANCE) or w.pixels > hi * (1 + RANGE_TOLERANCE):
            side_lo, side_hi = _side(lo), _side(hi)
            out.append(f"{w.width}x{w.height} is beyond the calibrated range ({side_lo}x{side_lo} to {side_hi}x{side_hi} pixels): "
                       "extrapolated; calibrate with --resolutions covering it for a measured answer")
        blo, bhi = self.batch_range
        if w.batch < blo or w.batch > bhi:
            out.append(f"batch {w.batch} is beyond the calibrated batches ({blo} to {bhi}): extrapolated; "
                       "calibrate with --batch-sizes covering it for a measured answer")
        return out

    # ------------------------------------------------------------------ describing
    def summary(self) -> dict[str, Any]:
        """The fitted coefficients in readable units (what ``diffprof calibrate`` prints and saves)."""
        def throughput(fit: OverheadFit) -> float | None:
            c = fit.coef[1]
            return 1 / c / 1e12 if c > 0 else None

        out: dict[str, Any] = {
            "key": self.key.__dict__,
            "run_id": self.calibration.run_id,
            "points": [p.label for p in self.points],
            "load_s": statistics.median(self.load_s),
            "text_encode": {"per_call_s": self.text.coef[0], "tflops": throughput(self.text), "overlap": self.text.k, "residual": self.text.sigma},
            "step": {"per_step_s": self.step.coef[0], "tflops": throughput(self.step), "overlap": self.step.k, "residual": self.step.sigma},
            "vae_decode": {"per_decoder_call_s": self.vae.coef[0], "tflops": throughput(self.vae), "overlap": self.vae.k, "residual": self.vae.sigma},
            "other": {"per_call_s": self.other.coef[0], "s_per_megapixel": self.other.coef[1] * 1e6, "residual": self.other.sigma},
            "fits": {name: fit.to_dict() for name, fit in (("text", self.text), ("step", self.step), ("vae", self.vae), ("other", self.other))},
        }
        if self.memory is not None:
            out["memory"] = {"baseline_bytes": self.memory.coef[0], "activation_factor": self.memory.coef[1], "residual": self.memory.sigma,
                             "metric": MEMORY_METRICS.get(self.key.device)}
            out["fits"]["memory"] = self.memory.to_dict()
        return out


def _side(pixels: int) -> int:
    return round(math.sqrt(pixels))


def _ms(seconds: float) -> str:
    from diffprof.units import fmt_seconds

    return fmt_seconds(seconds)
