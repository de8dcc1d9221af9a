"""Where a run ran: software versions, host, accelerator, and source revision.

A benchmark number means nothing without the machine and versions behind it, and a comparison of
two runs is only fair when those match. :func:`capture_environment` records them as plain,
JSON-serialisable data that the store keeps beside every run; :func:`environment_changes` lists
what differs between two such records so ``diffprof compare`` can warn about unlike-for-unlike.

Every probe fails soft: a missing package, no GPU, no NVML library or no git repository gives
``None`` (or an ``error`` string) for that field, never an exception. The whole capture takes a few
milliseconds once torch is imported (it never imports diffusers or transformers: versions come from
package metadata).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from diffprof import __version__

#: Distributions whose versions are recorded (read from metadata, so nothing is imported).
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy", "nvidia-ml-py")

#: Environment variables that change performance or device visibility; recorded when set.
ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "PYTORCH_CUDA_ALLOC_CONF",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    "TORCHINDUCTOR_CACHE_DIR",
    "HF_HUB_OFFLINE",
)

#: Keys that differ between any two captures and say nothing about comparability.
VOLATILE_KEYS = frozenset({"captured_at", "git.dirty", "nvml.error"})


def capture_environment() -> dict[str, Any]:
    """Describe this process's software and hardware as a JSON-serialisable dict.

    Top-level keys: ``captured_at``, ``diffprof``, ``python``, ``packages`` (name -> version or
    None), ``platform``, ``hostname``, ``cpu`` (model, logical/physical/usable cores), ``ram_bytes``,
    ``torch`` (version, threads, CUDA available/version, cuDNN), ``gpus`` (name, memory, compute
    capability per visible GPU), ``nvml`` (driver and per-GPU power limit and clocks, from
    ``nvidia-ml-py``), ``git`` (commit of the current directory's repository) and ``env_vars``.
    """
    torch_info = _torch_info()
    nvml = _nvml_info()
    # torch's view respects CUDA_VISIBLE_DEVICES, so it names the GPUs the run used; NVML's list
    # stands in when torch cannot use CUDA (a CPU build on a GPU host is worth knowing about).
    gpus = torch_info.pop("devices") or [{**g, "source": "nvml"} for g in nvml["gpus"]]
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "diffprof": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": _cpu_info(),
        "ram_bytes": _total_ram(),
        "torch": torch_info,
        "gpus": gpus,
        "nvml": nvml,
        "git": _git_info(os.getcwd()),
        "env_vars": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }


def describe_environment(env: dict[str, Any]) -> str:
    """One line naming the hardware and key versions, for table captions and run listings."""
    gpus = env.get("gpus") or (env.get("nvml") or {}).get("gpus") or []
    if gpus:
        names = [g.get("name") or "GPU" for g in gpus]
        hardware = names[0] if len(set(names)) == 1 else " + ".join(names)
        if len(names) > 1 and len(set(names)) == 1:
            hardware = f"{len(names)}x {hardware}"
        driver = (env.get("nvml") or {}).get("driver_version")
        if driver:
            hardware += f", driver {driver}"
    else:
        cpu = env.get("cpu") or {}
        cores = cpu.get("usable_cores") or cpu.get("logical_cores")
        hardware = f"CPU {cpu.get('model') or 'unknown'}" + (f" ({cores} cores)" if cores else "")
    parts = [hardware]
    torch_info = env.get("torch") or {}
    if torch_info.get("version"):
        cuda = torch_info.get("cuda_version")
        parts.append(f"torch {torch_info['version']}" + (f" (CUDA {cuda})" if cuda else ""))
    diffusers = (env.get("packages") or {}).get("diffusers")
    if diffusers:
        parts.append(f"diffusers {diffusers}")
    return ", ".join(parts)


def environment_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """What differs between two captures, as ``{"torch.version": ("2.4.0", "2.5.1"), ...}``.

    Nested dicts are flattened with dotted keys; lists (GPUs) compare as whole values. Keys that
    always differ (:data:`VOLATILE_KEYS`, e.g. the capture time) are left out, so an empty result
    means the two runs ran in the same place with the same software.
    """
    flat_a, flat_b = _flatten(a), _flatten(b)
    changes: dict[str, tuple[Any, Any]] = {}
    for key in sorted(flat_a.keys() | flat_b.keys()):
        if key in VOLATILE_KEYS:
            continue
        va, vb = flat_a.get(key), flat_b.get(key)
        if va != vb:
            changes[key] = (va, vb)
    return changes


# --------------------------------------------------------------------------- probes
def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_info() -> dict[str, Any]:
    model: str | None = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if not model:
        model = platform.processor() or platform.machine() or None
    physical: int | None = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unsupported platform
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "logical_cores": os.cpu_count(), "physical_cores": physical, "usable_cores": usable}


def _total_ram() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _torch_info() -> dict[str, Any]:
    """torch build, threads and the CUDA devices torch can see (respecting CUDA_VISIBLE_DEVICES)."""
    info: dict[str, Any] = {
        "version": None,
        "threads": None,
        "interop_threads": None,
        "cuda_available": False,
        "cuda_version": None,
        "cudnn_version": None,
        "devices": [],
    }
    try:
        import torch
    except Exception as exc:  # not installed or broken install
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    info["version"] = str(torch.__version__)
    info["threads"] = torch.get_num_threads()
    info["interop_threads"] = torch.get_num_interop_threads()
    info["cuda_version"] = torch.version.cuda
    try:
        info["cudnn_version"] = torch.backends.cudnn.version()
    except Exception:
        pass
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                info["devices"].append(
                    {
                        "index": index,
                        "name": props.name,
                        "memory_bytes": int(props.total_memory),
                        "compute_capability": f"{props.major}.{props.minor}",
                        "multiprocessors": int(props.multi_processor_count),
                        "source": "torch",
                    }
                )
    except Exception as exc:  # a broken driver must not stop a benchmark from being recorded
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _nvml_info() -> dict[str, Any]:
    """Driver version and per-GPU limits from NVML (``nvidia-ml-py``); all physical GPUs."""
    info: dict[str, Any] = {"available": False, "driver_version": None, "cuda_driver_version": None, "gpus": []}
    try:
        import pynvml
    except Exception as exc:
        info["error"] = f"nvidia-ml-py not importable: {exc}"
        return info
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no NVIDIA driver on this machine: the normal CPU case
        info["error"] = str(exc) or type(exc).__name__
        return info
    try:
        info["available"] = True
        info["driver_version"] = _text(_soft(pynvml.nvmlSystemGetDriverVersion))
        cuda_driver = _soft(pynvml.nvmlSystemGetCudaDriverVersion)
        if isinstance(cuda_driver, int):
            info["cuda_driver_version"] = f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}"
        for index in range(_soft(pynvml.nvmlDeviceGetCount) or 0):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = _soft(pynvml.nvmlDeviceGetMemoryInfo, handle)
            capability = _soft(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
            power_mw = _soft(pynvml.nvmlDeviceGetPowerManagementLimit, handle)
            sm_clock = _soft(pynvml.nvmlDeviceGetMaxClockInfo, handle, getattr(pynvml, "NVML_CLOCK_SM", 1))
            mem_clock = _soft(pynvml.nvmlDeviceGetMaxClockInfo, handle, getattr(pynvml, "NVML_CLOCK_MEM", 2))
            info["gpus"].append(
                {
                    "index": index,
                    "name": _text(_soft(pynvml.nvmlDeviceGetName, handle)),
                    "memory_bytes": int(memory.total) if memory is not None else None,
                    "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
                    "power_limit_w": power_mw / 1000 if isinstance(power_mw, (int, float)) else None,
                    "max_sm_clock_mhz": sm_clock,
                    "max_mem_clock_mhz": mem_clock,
                }
            )
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        _soft(pynvml.nvmlShutdown)
    return info


def _soft(fn: Any, *args: Any) -> Any:
    """Call an NVML query; None when the GPU or driver does not support it."""
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _git_info(cwd: str) -> dict[str, Any] | None:
    """Commit (and whether tracked files changed) of the repository holding ``cwd``, if any."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=2, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": branch, "dirty": bool(status) if status is not None else None}


if __name__ == "__main__":  # pragma: no cover - `python -m diffprof.environment` for a quick look
    import json

    print(json.dumps(capture_environment(), indent=2))
    print(describe_environment(capture_environment()), file=sys.stderr)
