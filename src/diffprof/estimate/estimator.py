"""The public face of resource planning: find the calibration, fit it, predict, answer budgets.

    with Store("diffprof.db") as store:
        est = Estimator.from_store(store, model="sdxl", device="cuda", precision="fp16")
        e = est.predict(width=1536, height=1536, steps=30, batch=4)
        print(e.time_s, e.interval, e.peak_bytes, e.warnings)
        answer = est.fit_budget(24 * 2**30, width=1536, height=1536, steps=30, batch=4)
        print(answer.message)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from diffprof.engine.precision import check_precision, resolve_precision
from diffprof.engine.switches import Optimizations
from diffprof.errors import ConfigError
from diffprof.estimate.budget import BudgetAnswer, candidates, fit_budget
from diffprof.estimate.calibration import Calibration, CalibrationKey, calibrations, device_type, missing_calibration
from diffprof.estimate.model import CostModel
from diffprof.estimate.result import Estimate
from diffprof.estimate.workload import Workload


class Estimator:
    """Predicts time and peak memory of a model on a device from its calibration.

    Build with :meth:`from_store`. ``others`` holds the store's calibrations of the same model,
    device and precision with other optimization sets, so :meth:`fit_budget` uses measurements
    where they exist and derives only the rest.
    """

    def __init__(self, model: CostModel, others: dict[str, Calibration] | None = None) -> None:
        self.model = model
        self._others = others or {}
        self._fitted: dict[str, CostModel] = {model.calibrated.label: model}

    @property
    def key(self) -> CalibrationKey:
        return self.model.key

    # ------------------------------------------------------------------ building
    @classmethod
    def from_store(
        cls,
        store: Any,
        *,
        model: str,
        device: str | None = None,
        precision: str | None = None,
        optimize: str | list[str] | None = None,
        run: int | str | None = None,
        weights: str | None = None,
    ) -> Estimator:
        """The estimator of the newest calibration of (model, device, precision, optimize) in ``store``.

        Args:
            model: preset name or diffusers folder, as given to ``diffprof calibrate``.
            device: ``cpu``, ``cuda`` (``cuda:N`` counts as ``cuda``); ``None``/``auto``: the only
                device the store calibrates this model on, else this machine's.
            precision: ``fp32``, ``fp16``, ``bf16``; ``None``/``auto``/``half``: the only calibrated
                one, else what ``auto``/``half`` means on the device.
            optimize: the optimization switches calibrated with (default: none).
            run: fit on this run's cells (any suite) instead of the newest calibration.
            weights: only used to word the ``diffprof calibrate`` command in errors.

        Raises:
            StoreError: nothing calibrates this; the hint is the exact command that would.
        """
        found = calibrations(store, run)
        label = Optimizations.parse(optimize).label
        mine = [k for k in found if k.model == model]
        dev = _pick_device(device, mine)
        prec = _pick_precision(precision, dev, [k for k in mine if k.device == dev])
        key = CalibrationKey(model, dev, prec, label)
        if key not in found:
            refused = calibrations(store, busy=True) if run is None else {}
            raise missing_calibration(key, getattr(store, "path", "diffprof.db"), found, weights, refused)
        fitted = CostModel.fit(found[key])
        others = {k.optimizations: c for k, c in found.items() if (k.model, k.device, k.precision) == (model, dev, prec)}
        return cls(fitted, others)

    # ------------------------------------------------------------------ predicting
    def predict(
        self,
        width: int,
        height: int,
        steps: int,
        batch: int = 1,
        guidance: float | None = None,
        optimize: str | list[str] | Optimizations | None = None,
        *,
        scheduler: str = "default",
        task: str | None = None,
        strength: float | None = None,
    ) -> Estimate:
        """Time and peak memory of one call; ``optimize`` other than the calibrated set is derived
        from that set's calibration, or measured where the store calibrates it.

        ``scheduler`` (a registry name; ``default``: the model's own) sets the denoiser calls its
        steps make; ``task`` ``img2img``/``inpaint`` (default: what the model runs, txt2img unless it
        is an inpainting model) adds the VAE encodes and runs the last ``strength`` of the steps
        (default 0.75, as ``generate``).
        """
        workload = self._workload(width, height, steps, batch, guidance, scheduler, task, strength)
        opts = optimize if isinstance(optimize, Optimizations) else (Optimizations.parse(optimize) if optimize is not None else None)
        return self._predict(workload, opts)

    def fit_budget(
        self,
        max_bytes: float,
        width: int,
        height: int,
        steps: int,
        batch: int = 1,
        guidance: float | None = None,
        headroom_bytes: float = 0.0,
        *,
        scheduler: str = "default",
        task: str | None = None,
        strength: float | None = None,
    ) -> BudgetAnswer:
        """The fastest memory-switch combination whose peak (upper interval end + ``headroom_bytes``)
        stays within ``max_bytes``; :attr:`BudgetAnswer.message` says what to do when none does."""
        workload = self._workload(width, height, steps, batch, guidance, scheduler, task, strength)
        base = replace(self.model.calibrated, offload="none") if self.model.calibrated.offload != "none" else self.model.calibrated
        options = candidates(base, self.key.device, self.key.precision)
        usable = [o for o in options if self._can_predict(o)]
        return fit_budget(lambda o: self._predict(workload, o), usable, max_bytes, workload, headroom_bytes)

    # ------------------------------------------------------------------ helpers
    def _workload(self, width: int, height: int, steps: int, batch: int, guidance: float | None, scheduler: str = "default",
                  task: str | None = None, strength: float | None = None) -> Workload:
        from diffprof.engine.model_facts import check_multiple, check_request, model_facts

        facts = model_facts(self.key.model)  # FLUX and SD3 sides are multiples of 16, SANA's of 32
        check_multiple(int(width), int(height), facts.size_multiple, self.key.model, facts.denoiser)
        task, strength = check_request(self.key.model, facts, scheduler, task, strength)
        g = guidance if guidance is not None else (7.5 if self.model.guided else 1.0)
        return Workload(int(width), int(height), int(steps), int(batch), float(g), scheduler=scheduler, task=task, strength=strength)

    def _model_for(self, opts: Optimizations) -> CostModel:
        """This set's own fit when calibrated, else the base model (which derives it)."""
        label = opts.label
        if label not in self._fitted and label in self._others:
            self._fitted[label] = CostModel.fit(self._others[label], self.model.architecture)
        return self._fitted.get(label, self.model)

    def _can_predict(self, opts: Optimizations) -> bool:
        if opts.label in self._fitted or opts.label in self._others:
            return True
        from diffprof.estimate.phases import UNMODELLED

        cal = self.model.calibrated
        if any(getattr(opts, f) == v and getattr(cal, f) != v for f, v in UNMODELLED.values()):
            return False
        return cal.offload == "none" or opts.offload == cal.offload

    def _predict(self, workload: Workload, opts: Optimizations | None) -> Estimate:
        if opts is None:
            return self.model.predict(workload)
        return self._model_for(opts).predict(workload, opts)


def _pick_device(device: str | None, keys: list[CalibrationKey]) -> str:
    if device not in (None, "auto"):
        dev = device_type(str(device))
        if dev not in ("cpu", "cuda"):
            raise ConfigError(f"unknown device {device!r}", "use cpu, cuda or cuda:N")
        return dev
    devices = sorted({k.device for k in keys})
    if len(devices) == 1:
        return devices[0]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _pick_precision(precision: str | None, device: str, keys: list[CalibrationKey]) -> str:
    import torch

    if precision not in (None, "auto", "half"):
        return check_precision(str(precision))
    precisions = sorted({k.precision for k in keys})
    if precision is None and len(precisions) == 1:
        return precisions[0]
    return resolve_precision(precision or "auto", torch.device(device))
