"""Environment capture: every field present, JSON-safe, fast, and soft-failing probes.

The GPU paths are exercised with a fake ``pynvml`` module and a faked ``torch.cuda`` (this machine
has no GPU), so the parsing of what a real H100 host reports is tested here too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import diffprof
from diffprof.environment import capture_environment, describe_environment, environment_changes

TOP_LEVEL = {
    "captured_at", "diffprof", "python", "python_implementation", "packages", "platform", "hostname",
    "cpu", "ram_bytes", "torch", "gpus", "nvml", "git", "env_vars",
}  # fmt: skip


def test_fields_present_and_json_serialisable() -> None:
    env = capture_environment()
    assert set(env) == TOP_LEVEL
    assert json.loads(json.dumps(env, allow_nan=False)) == env
    assert env["diffprof"] == diffprof.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(env["packages"]) >= {"torch", "diffusers", "transformers", "accelerate"}
    assert env["packages"]["torch"].split("+")[0] == str(torch.__version__).split("+")[0]
    assert env["hostname"] and env["platform"]
    assert env["cpu"]["logical_cores"] >= 1 and env["cpu"]["usable_cores"] >= 1 and env["cpu"]["model"]
    assert env["ram_bytes"] > 2**28
    t = env["torch"]
    assert t["version"] == str(torch.__version__) and t["threads"] == torch.get_num_threads() == 1  # conftest
    assert t["cuda_available"] == torch.cuda.is_available()
    assert t["cuda_version"] == torch.version.cuda
    assert set(t) >= {"cudnn_version", "interop_threads"}
    assert isinstance(env["gpus"], list) and isinstance(env["nvml"]["available"], bool)


def test_capture_starts_only_bounded_git_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture runs with every cell, so it must not hang on a slow probe: the only processes it
    starts are git's, each with a time limit (a structural check, not a wall-clock one)."""
    import diffprof.environment as envmod

    calls: list[tuple[list[str], Any]] = []
    real_run = subprocess.run

    def recording_run(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append((list(cmd), kwargs.get("timeout")))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(envmod.subprocess, "run", recording_run)
    capture_environment()
    assert calls, "the git commit is read with git"
    assert all(cmd[0] == "git" and timeout is not None and timeout <= 2 for cmd, timeout in calls)


def test_package_versions_come_from_metadata_without_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffprof.environment as envmod

    monkeypatch.setattr(envmod, "PACKAGES", ("numpy", "surely-not-installed-pkg"))
    before = set(sys.modules)
    packages = capture_environment()["packages"]
    assert packages["numpy"] and packages["surely-not-installed-pkg"] is None
    assert not {"diffusers", "transformers"} & (set(sys.modules) - before)


def test_env_vars_recorded_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    env_vars = capture_environment()["env_vars"]
    assert env_vars["CUDA_VISIBLE_DEVICES"] == "1" and "PYTORCH_CUDA_ALLOC_CONF" not in env_vars


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_of_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q", "-b", "trunk")
    (repo / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.chdir(repo)
    info = capture_environment()["git"]
    assert info == {"commit": git("rev-parse", "HEAD"), "branch": "trunk", "dirty": False}
    (repo / "a.txt").write_text("2")
    assert capture_environment()["git"]["dirty"] is True

    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert capture_environment()["git"] is None


def _fake_pynvml(fail_init: bool = False) -> types.ModuleType:
    """The parts of nvidia-ml-py diffprof calls, answering like an H100 host with two GPUs."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    m.NVMLError = NVMLError  # type: ignore[attr-defined]
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 1, 2  # type: ignore[attr-defined]
    m.calls = []  # type: ignore[attr-defined]

    def init() -> None:
        if fail_init:
            raise NVMLError("Driver Not Loaded")
        m.calls.append("init")  # type: ignore[attr-defined]

    def not_supported(*args: object) -> None:
        raise NVMLError("Not Supported")

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = lambda: m.calls.append("shutdown")  # type: ignore[attr-defined]
    m.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]  (older bindings return bytes)
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: f"handle{i}"  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=85_520_809_984, used=0, free=0)  # type: ignore[attr-defined]
    m.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)  # type: ignore[attr-defined]
    m.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000 if h == "handle0" else not_supported()  # type: ignore[attr-defined]
    m.nvmlDeviceGetMaxClockInfo = lambda h, kind: {1: 1980, 2: 2619}[kind]  # type: ignore[attr-defined]
    return m


def test_nvml_fields_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = capture_environment()
    nvml = env["nvml"]
    assert nvml["available"] is True and "error" not in nvml
    assert nvml["driver_version"] == "550.54.15" and nvml["cuda_driver_version"] == "12.4"
    first, second = nvml["gpus"]
    assert first == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_bytes": 85_520_809_984,
        "compute_capability": "9.0",
        "power_limit_w": 700.0,
        "max_sm_clock_mhz": 1980,
        "max_mem_clock_mhz": 2619,
    }
    assert second["index"] == 1 and second["power_limit_w"] is None  # unsupported query: None, not a crash
    # torch cannot see CUDA here, so the NVML list stands in for the GPUs
    assert [g["source"] for g in env["gpus"]] == ["nvml", "nvml"]
    assert fake.calls == ["init", "shutdown"]  # type: ignore[attr-defined]
    assert json.dumps(env, allow_nan=False)
    assert describe_environment(env).startswith("2x NVIDIA H100 80GB HBM3, driver 550.54.15, torch ")


def test_nvml_failures_are_soft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    nvml = capture_environment()["nvml"]
    assert nvml["available"] is False and nvml["gpus"] == [] and nvml["error"] == "Driver Not Loaded"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    nvml = capture_environment()["nvml"]
    assert nvml["available"] is False and "not importable" in nvml["error"]


def test_cuda_devices_from_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    props = types.SimpleNamespace(name="NVIDIA H200", total_memory=150_000_000_000, major=9, minor=0, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    env = capture_environment()
    assert env["torch"]["cuda_available"] is True
    assert env["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "memory_bytes": 150_000_000_000,
            "compute_capability": "9.0",
            "multiprocessors": 132,
            "source": "torch",
        }
    ]
    assert describe_environment(env).startswith("NVIDIA H200, torch ")


def test_a_broken_cuda_driver_does_not_stop_the_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    t = capture_environment()["torch"]
    assert t["cuda_available"] is False and "CUDA driver initialization failed" in t["error"]


def test_describe_cpu_host() -> None:
    env = {
        "cpu": {"model": "AMD EPYC", "usable_cores": 2},
        "torch": {"version": "2.13.0", "cuda_version": None},
        "packages": {"diffusers": "0.42.1"},
    }
    assert describe_environment(env) == "CPU AMD EPYC (2 cores), torch 2.13.0, diffusers 0.42.1"
    assert describe_environment({}) == "CPU unknown"


def test_environment_changes() -> None:
    a = capture_environment()
    b = json.loads(json.dumps(a))
    b["captured_at"] = "2030-01-01T00:00:00+00:00"
    assert environment_changes(a, b) == {}  # the capture time is not a difference
    b["torch"]["version"] = "9.9.9"
    b["gpus"] = [{"name": "NVIDIA H100"}]
    b["extra"] = 1
    changes = environment_changes(a, b)
    assert changes["torch.version"] == (a["torch"]["version"], "9.9.9")
    assert changes["gpus"] == (a["gpus"], [{"name": "NVIDIA H100"}])
    assert changes["extra"] == (None, 1)
    assert set(changes) == {"torch.version", "gpus", "extra"}
