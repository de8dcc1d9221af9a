"""The ray executor on a local 2-CPU Ray cluster started by these tests (issue #7): the same cells
as serial, a failing cell failed in its cell, a lost actor's cell run again on a fresh actor."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from test_executors import expected, run_sweep, stored, submit_one_at_a_time, sweep

from diffprof.config import RunConfig
from diffprof.errors import ConfigError
from diffprof.store import Store
from diffprof.suites import expand
from diffprof.suites.executors.base import DEATHS_PER_CELL, DIED
from diffprof.suites.runner import Runner
from diffprof.suites.worker import TEST_KILL_ENV

ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray: pip install 'diffprof[ray]'")

pytestmark = pytest.mark.slow  # a Ray cluster and its actors take seconds to start on 2 cores


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A private local cluster; the executor uses it as it is and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_cells_as_serial(cluster: Any, tmp_path: Path) -> None:
    config = sweep(executor="ray")
    run_id, _ = run_sweep(tmp_path / "ray.db", config)
    assert stored(tmp_path / "ray.db", run_id) == expected(config)
    with Store(tmp_path / "ray.db") as store:
        run = store.get_run(run_id)
    failed = [c for c in run.cells if not c.ok]
    assert len(failed) == 1 and "needs a CUDA device" in (failed[0].error or "")
    workers = {c.settings["worker"] for c in run.cells}
    assert workers and all(w.startswith(("ray0@", "ray1@")) for w in workers)
    assert cluster.is_initialized()  # a session the caller started is left running


def test_ray_reruns_a_lost_actors_cell_and_fails_a_cell_that_always_kills(cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "euler-died-once"
    monkeypatch.setenv(TEST_KILL_ENV, f"scheduler=euler@{marker};scheduler=pndm")  # reaches the actors through runtime_env
    # one actor (each loss starts a fresh one): test_ray_gives_the_same_cells_as_serial runs two at once
    config = sweep(suites=["schedulers"], schedulers=["ddim", "euler", "pndm"], executor="ray", workers=1)
    run_id, out = run_sweep(tmp_path / "kill.db", config)
    cells = {c.labels["scheduler"]: c for c in expand(config)}
    assert stored(tmp_path / "kill.db", run_id) == {cells["ddim"].key: "ok", cells["euler"].key: "ok", cells["pndm"].key: "failed"}
    assert marker.exists()
    with Store(tmp_path / "kill.db") as store:
        pndm = next(c for c in store.get_run(run_id).cells if c.labels["scheduler"] == "pndm")
    assert pndm.error is not None and pndm.error.startswith(f"{DIED} ({DEATHS_PER_CELL} times") and "was lost" in pndm.error
    assert out.count("! ray") == 1 + DEATHS_PER_CELL
    assert "scheduler=euler runs again" in out


def test_ray_takes_cells_that_arrive_one_at_a_time_on_the_actor_it_started(cluster: Any, tmp_path: Path) -> None:
    (a, b), (first, second), run = submit_one_at_a_time(sweep(suites=["schedulers"], executor="ray"), tmp_path / "s.db")
    assert a.ok and b.ok and a.settings["worker"] == b.settings["worker"] and a.settings["worker"].startswith("ray0@")
    assert (a.settings["engine_reused"], b.settings["engine_reused"]) == (False, True)
    assert [c.cell_key for c in run.cells] == [first.key, second.key]


@pytest.mark.parametrize(
    "changes, message",
    [({"workers": 3}, "need 3 CPUs, but the cluster has 2"), ({"device": "cuda"}, "needs GPUs, but the Ray cluster has none")],
)
def test_ray_refuses_what_the_cluster_cannot_hold_before_storing_a_run(
    cluster: Any, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    config = RunConfig.from_mapping({**sweep().to_dict(), "executor": "ray", **changes})
    with Store(tmp_path / "x.db") as store:
        with pytest.raises(ConfigError, match=message):
            Runner(config, store, console=Console(file=StringIO()), progress=False).run()
        assert store.list_runs() == []
