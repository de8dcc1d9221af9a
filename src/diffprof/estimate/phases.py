"""The rows the cost model's time parts are fitted on, and where each phase's peak memory lies:
the per-phase pieces of :mod:`diffprof.estimate.model`, kept apart so the model reads as the fit."""

from __future__ import annotations

from diffprof.engine.switches import Optimizations
from diffprof.estimate.architecture import PHASES, Features
from diffprof.estimate.calibration import CalibrationPoint
from diffprof.estimate.regression import LinearFit, fit_relative


def text_row(f: Features) -> list[float]:
    return [1.0, f.text.flops]


def step_row(f: Features) -> list[float]:
    return [1.0, f.unet.flops]


def vae_row(f: Features) -> list[float]:
    return [float(f.vae.calls), f.vae.flops]


def other_row(f: Features) -> list[float]:
    return [1.0, float(f.pixels * f.batch)]


#: Switches a calibration without them cannot predict: switch name -> (Optimizations field, its value when on).
UNMODELLED = {"group_offload": ("offload", "group"), "t5_offload": ("t5_offload", True), "drop_t5": ("drop_t5", True),
              "int8_weights": ("int8_weights", True), "layerwise_casting": ("layerwise_casting", True), "fp8": ("fp8", True)}


def phases(f: Features, opts: Optimizations) -> dict[str, tuple[float, float]]:
    """(resident weight bytes, activation bytes) per phase under ``opts``' placement."""
    if opts.offload == "model":
        resident = {"text": f.text.weight_bytes, "unet": f.unet.weight_bytes, "vae": f.vae.weight_bytes}
    elif opts.offload in ("sequential", "group"):  # group: a lower bound (a block or layer of each component at a time)
        resident = dict.fromkeys(PHASES, f.largest_layer_bytes)
    else:
        resident = dict.fromkeys(PHASES, f.weight_bytes)
    return {p: (resident[p], f.phase(p).activation_bytes) for p in PHASES}


def peak_phase(f: Features, opts: Optimizations, k: float) -> str:
    parts = phases(f, opts)
    return max(PHASES, key=lambda p: parts[p][0] + k * parts[p][1])


def fit_memory(points: list[CalibrationPoint], feats: list[Features], opts: Optimizations) -> LinearFit | None:
    """peak - resident = baseline + k * activations, with each point's peak phase found for the fitted k."""
    usable = [(p, f) for p, f in zip(points, feats) if p.peak_bytes is not None and p.peak_bytes > 0]
    if len(usable) < 2:
        return None
    k = 1.0
    assignment: list[str] = []
    fit: LinearFit | None = None
    for _ in range(6):
        now = [peak_phase(f, opts, k) for _, f in usable]
        if now == assignment and fit is not None:
            break
        assignment = now
        rows, offsets = [], []
        for (_, f), phase in zip(usable, assignment):
            resident, activation = phases(f, opts)[phase]
            rows.append([1.0, activation])
            offsets.append(resident)
        fit = fit_relative(rows, [float(p.peak_bytes) for p, _ in usable], ("baseline", "activation_factor"), offset=offsets)  # type: ignore[arg-type]
        k = fit.coef[1]
    return fit
