"""Many `diffprof bench` processes writing one PostgreSQL store at once, one of them killed mid-run.

    python benchmarks/pg_writers.py                        # 8 writers, a throwaway server (Debian's binaries)
    python benchmarks/pg_writers.py --writers 16 --db postgresql://ci@db.internal/diffprof_bench
    python benchmarks/pg_writers.py --doc docs/benchmarks.md   # also into that page's pg-writers section

Each writer is a real `diffprof bench` (tiny-sd, 2 steps, 32 px, one torch thread, one round) with
a run of its own; all start together. One more, the victim, measures more cells in 2 rounds and is
SIGKILLed as soon as its first round of a cell is stored (cells are stored after every round);
`diffprof bench --resume` then finishes its run, each cell from its next round. Checked
afterwards: every run holds each of its cells exactly once, all ok, finished; the victim lost only
the round it was measuring; the store's integrity checks (foreign keys, orphans, duplicated keys)
pass. Prints the figures: wall time of the writers, cells per second, what the
kill left, the resume. tests/test_store_concurrency.py runs the same with 2 writers and the
victim (each bench process costs ~6 CPU-seconds of imports and model building, so 8 belong here).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEDULERS = ["euler", "ddim"]
VICTIM_SCHEDULERS = ["euler", "ddim", "pndm", "lms"]
VICTIM = "writer-killed"
FAST = ["--model", "tiny-sd", "--steps", "2", "--width", "32", "--height", "32", "--warmup", "0", "--threads", "1",
        "--no-report", "--no-progress"]


@dataclass
class Outcome:
    writers: int
    wall_s: float
    cells: int
    killed_kept: int
    victim_cells: int
    resume_s: float
    resume_output: str
    load: float = 0.0
    problems: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)

    def figures(self) -> str:
        return "\n".join([
            f"{self.writers} bench processes at once: {self.cells} cells in {self.wall_s:.1f} s ({self.cells / self.wall_s:.2f} cells/s, all processes; "
            f"host load average {self.load:.1f} on {os.cpu_count()} cores at the end)",
            f"killed writer: {self.killed_kept} of {self.victim_cells} cells had a round stored when it died; --resume finished it in {self.resume_s:.1f} s",
            "checks: " + ("every cell exactly once, all runs finished, integrity ok" if not self.problems else "; ".join(self.problems)),
        ])  # fmt: skip


def bench(db: str, name: str, schedulers: list[str], repeats: int) -> list[str]:
    """A bench command measuring each cell in ``repeats`` rounds of one call."""
    return [sys.executable, "-m", "diffprof", "bench", "-s", "schedulers", "--schedulers", ",".join(schedulers), "--repeats", str(repeats),
            "--rounds", str(repeats), *FAST, "--name", name, "--db", db]


def _stored(db: str, name: str) -> int:
    from diffprof.store import Store

    with Store(db) as store:
        runs = [r for r in store.list_runs(None) if r.name == name]
        return sum(runs[0].counts.values()) if runs else 0


def run(db: str, writers: int = 8, logs: Path | None = None, timeout: float = 540.0) -> Outcome:
    """Start ``writers`` benches and the victim on ``db``, kill the victim after its first cell,
    resume it, and check the store."""
    logs = logs or Path(tempfile.mkdtemp(prefix="pg-writers-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    names = [f"writer-{i}" for i in range(writers)]
    started = time.perf_counter()
    procs = {name: subprocess.Popen(bench(db, name, SCHEDULERS, 1), stdout=(logs / f"{name}.log").open("w"), stderr=subprocess.STDOUT, env=env)
             for name in names}  # fmt: skip
    victim = subprocess.Popen(bench(db, VICTIM, VICTIM_SCHEDULERS, 2), stdout=(logs / f"{VICTIM}.log").open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while _stored(db, VICTIM) < 1 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_kept = _stored(db, VICTIM)
    problems = []
    for name, proc in procs.items():
        if proc.wait(timeout=max(1.0, deadline - time.monotonic())) != 0:
            problems.append(f"{name} exited {proc.returncode}: {(logs / f'{name}.log').read_text()[-2000:]}")
    wall = time.perf_counter() - started
    if victim.returncode != -signal.SIGKILL:
        problems.append(f"the victim was not killed mid-run (exit {victim.returncode})")
    t0 = time.perf_counter()
    resumed = subprocess.run([sys.executable, "-m", "diffprof", "bench", "--resume", VICTIM, "--db", db, "--no-report", "--no-progress"],
                             capture_output=True, text=True, env=env, timeout=max(1.0, deadline - time.monotonic()))
    resume_s = time.perf_counter() - t0
    if resumed.returncode != 0:
        problems.append(f"resume exited {resumed.returncode}: {resumed.stderr[-2000:]}")
    problems += check(db, {**{n: SCHEDULERS for n in names}, VICTIM: VICTIM_SCHEDULERS})
    return Outcome(writers, wall, writers * len(SCHEDULERS), killed_kept, len(VICTIM_SCHEDULERS), resume_s, resumed.stdout + resumed.stderr,
                   os.getloadavg()[0], problems, {p.stem: p.read_text() for p in logs.glob("*.log")})


def check(db: str, expected: dict[str, list[str]]) -> list[str]:
    """What is wrong with the runs of ``expected`` (name -> schedulers) in ``db``."""
    from diffprof.store import Store

    problems: list[str] = []
    with Store(db) as store:
        problems += store.integrity_problems()
        runs = store.list_runs(None)
        for name, schedulers in expected.items():
            mine = [r for r in runs if r.name == name]
            if len(mine) != 1:
                problems.append(f"{len(mine)} runs named {name}")
                continue
            run = store.get_run(mine[0].id)
            got = sorted(c.labels["scheduler"] for c in run.cells)
            if got != sorted(schedulers):
                problems.append(f"{name} holds {got}, not {sorted(schedulers)}")
            if run.status != "finished" or any(not c.ok for c in run.cells):
                problems.append(f"{name} is {run.status} with {run.counts}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--db", help="a PostgreSQL URL (default: a throwaway server started here)")
    parser.add_argument("--doc", metavar="PAGE.md", help="also write the figures into this page's pg-writers section")
    args = parser.parse_args()
    server = None
    db = args.db
    if db is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from pgserver import PostgresServer, find_bindir

        bindir = find_bindir()
        if bindir is None:
            sys.exit("no PostgreSQL binaries: apt-get install postgresql, or pass --db postgresql://...")
        server = PostgresServer(bindir).start()
        db = server.create_store("bench")
    try:
        outcome = run(db, args.writers)
        print(outcome.figures())
        if args.doc:
            import shlex

            from diffprof.report.sections import provenance, write_section

            command = "python " + shlex.join(["benchmarks/pg_writers.py", *sys.argv[1:]])
            figures = "\n".join(f"- {line}" for line in outcome.figures().splitlines())
            write_section(args.doc, "pg-writers", f"{provenance(command)}\n\n{figures}")
        sys.exit(1 if outcome.problems else 0)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
