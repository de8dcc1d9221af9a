"""How many denoiser evaluations one call makes, and how that count was had.

A calibration measures time per denoiser evaluation with one scheduler (the model's own, by default)
on txt2img; a workload may ask for another scheduler (Heun, DPM2 and flow Heun evaluate the denoiser
about twice per step) or an img2img/inpaint call, which runs only the last ``strength`` of the steps.
The count comes from the scheduler's own timesteps (:func:`~diffprof.engine.schedulers.model_evals`
on the model's scheduler config), so it follows diffusers; without the model's config (a synthetic
architecture) it falls back to the registry's evaluations per step.
"""

from __future__ import annotations

from typing import Any

from diffprof.engine.schedulers import DEFAULT, SCHEDULERS, model_evals
from diffprof.estimate.workload import Workload


def _per_step(name: str) -> int:
    spec = SCHEDULERS.get(name)
    return spec.evals_per_step if spec is not None else 1


def denoiser_calls(workload: Workload, calibrated: str, eval_offset: int, scheduler_config: dict[str, Any] | None) -> tuple[int, str | None]:
    """Denoiser evaluations of ``workload``'s call, and ``None`` when they are counted as the
    calibration ran (its scheduler, every step), else a note saying how they were counted.

    ``calibrated`` is the calibration's scheduler and ``eval_offset`` the evaluations its calls made
    beyond their steps (PNDM: one); ``scheduler_config`` the model's own scheduler config.
    """
    scheduler = workload.scheduler if workload.scheduler != DEFAULT else calibrated
    as_calibrated = scheduler == calibrated and workload.strength >= 1
    if as_calibrated and scheduler_config is None:
        return workload.steps + eval_offset, None
    if scheduler_config is not None:
        calls = model_evals(scheduler, workload.steps, scheduler_config, workload.strength)
        how = "counted from its timesteps"
    else:
        per_step = _per_step(scheduler)
        full = workload.steps * per_step + (eval_offset if scheduler == calibrated else 0)
        skipped = workload.steps - min(int(workload.steps * workload.strength), workload.steps)
        calls = max(0, full - skipped * per_step)
        how = f"{per_step} per step, from the scheduler registry"
    if as_calibrated:
        return calls, None
    named = "the model's own scheduler" if scheduler == DEFAULT else scheduler
    strength = f" at strength {workload.strength:g}" if workload.strength < 1 else ""
    return calls, (f"{calls} denoiser calls for {workload.steps} steps of {named}{strength} ({how}); "
                   f"time per call as calibrated with {'the default' if calibrated == DEFAULT else calibrated}")
