"""Shared test set-up: one torch thread (2-thread timings spike 10-100x on these machines), caches
private to the test session, and the slow tests first when `make test` spreads them over workers."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from diffprof.clock import FakeClock

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextmanager
def simulated_host(others: float = 0.0, cpus: int = 2) -> Iterator[None]:
    """The runner's and calibrate's machine state as if other processes kept ``others`` cores busy
    beside a run that keeps one (0: a quiet host), whatever this shared machine is doing: a run
    whose timings do not matter to a test must not be refused for the machine the test ran on."""
    from diffprof.profiler import machine
    from diffprof.suites import recalibrate, runner

    class SimulatedTracker(machine.MachineTracker):
        def __init__(self) -> None:
            super().__init__(gpus=lambda: [])
            self._t = 0.0

        def _reading(self) -> machine.CpuReading:
            self._t += 10.0
            return machine.CpuReading(self._t, (1.0 + others) * self._t, 0.0, self._t)

    original = machine.read_cpu_count
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "MachineTracker", SimulatedTracker)
        patch.setattr(recalibrate, "MachineTracker", SimulatedTracker)
        patch.setattr(machine, "read_cpu_count", lambda proc: cpus if proc == machine.Path("/proc") else original(proc))
        yield


@pytest.fixture
def quiet_host() -> Iterator[None]:
    """A quiet host as the machine state records it (see :func:`simulated_host`)."""
    with simulated_host(0.0):
        yield


#: What a terminal puts in the environment; GNU readline, initialised in each xdist worker, sets
#: COLUMNS=80 and LINES=24 there, and the CLI's tables (sized from COLUMNS when it is set) came out
#: 80 columns wide under `make test` only.
TERMINAL_ENV = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller, per worker: hand it the controller's own terminal variables."""
    node.workerinput["terminal_env"] = {name: os.environ.get(name) for name in TERMINAL_ENV}


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker takes the controller's terminal variables, so tests see what `pytest` saw."""
    for name, value in getattr(config, "workerinput", {}).get("terminal_env", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):
        # an xdist worker: it collects, and `--dist loadscope --no-loadscope-reorder` (the Makefile)
        # hands out whole modules in this order; the modules with the most slow tests first, then the
        # most tests (xdist's own order), keep both workers busy to the end instead of leaving one idle
        # behind a long module (a stable sort: the tests of a module keep their order)
        module = Counter(item.nodeid.split("::")[0] for item in items)
        slow = Counter(item.nodeid.split("::")[0] for item in items if "slow" in item.keywords)
        items.sort(key=lambda item: (-slow[item.nodeid.split("::")[0]], -module[item.nodeid.split("::")[0]]))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on the lent GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


#: Caches diffprof and torch keep between processes, moved under the session's temp folder.
PRIVATE_CACHES = {"DIFFPROF_CACHE_DIR": "diffprof-cache", "TORCHINDUCTOR_CACHE_DIR": "inductor-cache"}


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compile blobs, device peaks and inductor's kernels in this session's temp folder, for this
    process and the processes its tests start: a test never sees what an earlier run (or another
    test worker) left in ~/.cache/diffprof or /tmp/torchinductor_$USER, and never writes there."""
    saved = {name: os.environ.get(name) for name in PRIVATE_CACHES}
    for name, folder in PRIVATE_CACHES.items():
        os.environ[name] = str(tmp_path_factory.mktemp(folder))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def aot_eager_compile() -> Iterator[None]:
    """Every torch.compile graph of the test runs through AOTAutograd's eager backend instead of
    inductor: Dynamo still traces, guards and counts recompiles, and AOTAutograd still
    functionalizes and decomposes, but no kernel is generated or built (a C++ build per graph on
    the CPU: the tiny UNet's regional compile takes ~90 s cold with inductor, ~5 s without). For
    tests of diffprof's compile logic (what is compiled, in place, with which limits), not of
    inductor's code. Inductor options are still checked where torch.compile is called."""
    import torch._dynamo

    with torch._dynamo.config.patch(debug_backend_override=">=0:aot_eager"):
        yield


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random CLIP (32 hidden, 32 px images) and a byte-level CLIP tokenizer with no merges,
    saved locally: what `--clip-model PATH` loads in the CLIP-score tests."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # highest id, as in CLIP: the text tower pools at it
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (skips only if that fails)."""
    import shutil
    import subprocess

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    try:
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:  # a fresh machine may lack package lists
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600)
            proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    except (subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"could not install chromium with apt-get: {exc}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"could not install chromium with apt-get (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return found


# ----------------------------------------------------------------------------- results stores
@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One real PostgreSQL server for this test session (each xdist worker is a session of its
    own), started the first time a test asks for it and stopped at the end. Debian's binaries are
    installed with apt-get when missing (as .ci/run does first); where that cannot be done the
    PostgreSQL cases are skipped, except under CI, where they fail."""
    from pgserver import PostgresServer, find_bindir, install_postgresql

    pytest.importorskip("psycopg", reason="pip install 'diffprof[postgres]' (in the dev extras)")
    bindir = find_bindir() or install_postgresql()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL binaries (initdb), and apt-get could not install Debian's postgresql package")
        pytest.skip("no PostgreSQL binaries (apt-get install postgresql)")
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's results store lives, once per backend: a fresh SQLite file, then a fresh
    schema of its own on the session's PostgreSQL server. One test body runs against both."""
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    return str(request.getfixturevalue("pg_server").create_store())
@pytest.fixture(scope="session")
def presetless_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny QwenImage and FLUX.2 [klein] pipelines saved as plain diffusers folders, once per session
    (tests/presetless.py): the generic path's inputs."""
    from presetless import save_presetless

    return save_presetless(tmp_path_factory.mktemp("presetless"))


@pytest.fixture(scope="session")
def dit_engine():
    """``dit_engine(name)``: one loaded CPU engine per tiny diffusion-transformer preset (or presetless
    folder) for the whole session, built on first use (tests/test_*_dit.py share them)."""
    from diffprof.engine import Engine
    from diffprof.profiler import Profiler

    engines: dict[str, Engine] = {}

    def get(model: str) -> Engine:
        if model not in engines:
            engines[model] = Engine.load(model, device="cpu", profiler=Profiler("standard", device="cpu", measure_overhead=False))
        return engines[model]

    yield get
    for engine in engines.values():
        engine.close()
