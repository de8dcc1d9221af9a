"""Calibration data: which stored run calibrates what, and the points a cost model is fitted on.

A calibration is an ordinary run in the store whose cells belong to the ``calibration`` suite
(``diffprof calibrate`` records one). It calibrates one :class:`CalibrationKey`: model, device type,
precision and optimization set, read from the cells' effective settings (so ``--device auto`` and
``--precision auto`` resolve to what actually ran). The newest matching run wins, except that a run
measured on a busy host (:func:`~diffprof.analysis.machine.host_load`) is passed over unless it was
forced (``calibrate --force``), and then every estimate from it says so.
"""

from __future__ import annotations

import math
import shlex
import statistics
from dataclasses import dataclass, field
from typing import Any

from diffprof.engine.switches import label_switches
from diffprof.errors import StoreError
from diffprof.estimate.workload import Workload
from diffprof.results import CALIBRATION_NOTE, CellResult, RunInfo

SUITE = "calibration"
#: The stored metric that is "peak memory", per device type (see :class:`~diffprof.estimate.result.Estimate`).
MEMORY_METRICS = {"cuda": "peak_allocated_bytes", "cpu": "host_peak_rss_bytes"}


@dataclass(frozen=True)
class CalibrationKey:
    """What one calibration is valid for. ``optimizations`` is the canonical label (``none``, ``vae_slicing``)."""

    model: str
    device: str
    precision: str
    optimizations: str = "none"

    @property
    def switches(self) -> list[str]:
        return label_switches(self.optimizations)

    def describe(self) -> str:
        return f"{self.model} on {self.device} ({self.precision}, optimizations: {self.optimizations})"

    def command(self, db: str | None = None, weights: str | None = None) -> str:
        """The exact ``diffprof calibrate`` command that records this calibration."""
        args = ["diffprof", "calibrate", "--model", self.model, "--device", self.device, "--precision", self.precision]
        if weights and weights not in ("auto", "builtin"):
            args += ["--weights", weights]
        if self.switches:
            args += ["--optimize", ",".join(self.switches)]
        if db and db != "diffprof.db":
            args += ["--db", db]
        if self.device == "cpu":
            args += ["--threads", "1"]
        return shlex.join(args)


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured cell, reduced to what the cost model fits.

    Times are medians over the cell's repeats: ``step_s`` per denoising step (steady state), and
    ``other_s`` whatever a call spends outside text encoding, the steps, VAE decode and VAE encode
    (``encode_s``: an inpainting model's calibration measures it; latents set up, scheduler,
    post-processing, a slower first step), so the parts add up to ``call_s``.
    """

    cell_id: int | None
    workload: Workload
    unet_evals: int
    call_s: float
    text_s: float
    step_s: float
    vae_s: float
    other_s: float
    load_s: float
    peak_bytes: float | None
    encode_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.workload.width}x{self.workload.height} b{self.workload.batch}"


@dataclass
class Calibration:
    """The points of one calibration run, with where they came from."""

    key: CalibrationKey
    run_id: int
    created_at: str
    environment: str
    points: list[CalibrationPoint]
    weights: str = "auto"
    failed: list[str] = field(default_factory=list)
    #: Why the host was busy while it measured (None: quiet, or not recorded).
    busy: str | None = None
    #: The scheduler the calibration ran (``default``: the model's own).
    scheduler: str = "default"
    #: Cells measured twice that disagreed with the others' fit both times (their calibration notes).
    disagreeing: list[str] = field(default_factory=list)


def point_from_cell(cell: CellResult, device_type: str) -> CalibrationPoint:
    """Reduce a measured cell to a :class:`CalibrationPoint` (its raw samples, not just medians)."""
    s, m = cell.settings, cell.metrics
    med = statistics.median
    step = med(cell.samples["step_s"]) if cell.samples.get("step_s") else float(m["step_median_s"])
    calls = cell.samples.get("call_s") or [float(m["s_per_call"])]
    # loop iterations per call: every repeat's step samples over the calls (unet_evals counts denoiser
    # forwards, two per iteration where a pipeline runs its guidance halves apart)
    steps = cell.samples.get("step_s") or []
    evals = len(steps) // len(calls) if steps and len(steps) % len(calls) == 0 else int(m.get("unet_evals") or s["steps"])
    texts = cell.samples.get("text_encode_s") or [float(m.get("text_encode_s", 0.0))] * len(calls)
    vaes = cell.samples.get("vae_decode_s") or [float(m.get("vae_decode_s", 0.0))] * len(calls)
    encodes = cell.samples.get("vae_encode_s") or [float(m.get("vae_encode_s", 0.0))] * len(calls)
    other = med([c - t - v - e - evals * step for c, t, v, e in zip(calls, texts, vaes, encodes)])
    peak = m.get(MEMORY_METRICS.get(device_type, "peak_allocated_bytes"))
    task = str(s.get("task", "txt2img"))
    return CalibrationPoint(
        cell_id=cell.id,
        workload=Workload(int(s["width"]), int(s["height"]), int(s["steps"]), int(s["batch"]), float(s.get("guidance", 7.5)),
                          task=task, strength=float(s.get("strength", 1.0)) if task != "txt2img" else 1.0),
        unet_evals=evals,
        call_s=med(calls),
        text_s=med(texts),
        step_s=step,
        vae_s=med(vaes),
        other_s=other,
        load_s=float(m.get("load_s", 0.0)),
        peak_bytes=None if peak is None or math.isnan(peak) else float(peak),
        encode_s=med(encodes),
    )


def cell_key(cell: CellResult) -> CalibrationKey | None:
    """The key a measured cell calibrates (None for failed cells, which lack effective settings)."""
    s = cell.settings
    if not cell.ok or "optimizations" not in s:
        return None
    return CalibrationKey(str(s["model"]), device_type(str(s["device"])), str(s["precision"]), str(s["optimizations"]))


def device_type(device: str) -> str:
    return device.split(":")[0]


def calibrations(store: Any, run: int | str | None = None, *, busy: bool = False) -> dict[CalibrationKey, Calibration]:
    """Every calibration in ``store`` (the newest usable run per key), or the ones in run ``run``.

    With ``run`` given, any suite's cells count (e.g. a ``resolutions`` + ``batch`` bench run), and a
    busy host does not keep it out (its estimates say so). Without it, a run measured on a busy host
    counts only if it was forced, or when ``busy`` asks for those too (only they, newest first).
    """
    from diffprof.environment import describe_environment

    if run is not None:
        runs = [store.get_run(run)]
    else:
        runs = [store.get_run(r.id) for r in store.list_runs(limit=None) if SUITE in (r.config.get("suites") or [])]
    found: dict[CalibrationKey, Calibration] = {}
    for info in runs:  # newest first
        refused = _busy(info) is not None and not info.config.get("force")
        if run is None and refused != busy:
            continue
        for key, cal in _from_run(info, describe_environment(info.environment), any_suite=run is not None).items():
            found.setdefault(key, cal)
    return found


def _busy(run: RunInfo) -> str | None:
    from diffprof.analysis.machine import host_load

    load = host_load(run.machine)
    return load.reason if load.busy else None


def _from_run(run: RunInfo, environment: str, any_suite: bool) -> dict[CalibrationKey, Calibration]:
    out: dict[CalibrationKey, Calibration] = {}
    weights = str(run.config.get("weights", "auto"))
    busy = _busy(run)
    for cell in run.cells:
        if not any_suite and cell.suite != SUITE:
            continue
        key = cell_key(cell)
        if key is None:
            continue
        scheduler = str(cell.settings.get("scheduler", "default")).split(" (")[0]  # "default (pndm)": the model's own
        cal = out.setdefault(key, Calibration(key, run.id, run.created_at, environment, [], weights, busy=busy, scheduler=scheduler))
        cal.points.append(point_from_cell(cell, key.device))
        if "disagrees too" in str(cell.settings.get(CALIBRATION_NOTE) or ""):
            cal.disagreeing.append(cal.points[-1].label)
    failed = [f"{c.label}: {c.error}" for c in run.cells if not c.ok and (any_suite or c.suite == SUITE)]
    for cal in out.values():
        cal.failed = failed
    return out


def missing_calibration(key: CalibrationKey, db: str, available: dict[CalibrationKey, Calibration], weights: str | None = None,
                        refused: dict[CalibrationKey, Calibration] | None = None) -> StoreError:
    """The error for an estimate nothing calibrates: names the exact command that fixes it.

    The command reuses the weights of the model's other calibrations (``synthetic`` for a full-size
    model offline), and says when a calibration of the same device and precision could derive it,
    or when one was passed over because its host was busy (``refused``).
    """
    near = [k for k in available if k.model == key.model]
    have = f"; {db} calibrates: " + "; ".join(k.describe() for k in near) if near else ""
    if weights is None and near:
        weights = available[near[0]].weights
    base = [k for k in near if (k.device, k.precision) == (key.device, key.precision) and k.optimizations == "none"]
    derive = " (or add --derive to derive it from the none calibration)" if base and key.optimizations != "none" else ""
    busy = (refused or {}).get(key)
    if busy is not None:
        return StoreError(f"no usable calibration for {key.describe()} in {db}: run {busy.run_id} was measured on a busy host ({busy.busy})",
                          f"recalibrate on a quiet host: {key.command(db, weights or busy.weights)}; or use it anyway: --run {busy.run_id}")
    return StoreError(f"no calibration for {key.describe()} in {db}{have}", f"run: {key.command(db, weights)}{derive}")
