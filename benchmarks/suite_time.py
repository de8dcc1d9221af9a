"""How long the test suite takes, and where the time goes (issue 20: `make test` in 5 minutes).

    python benchmarks/suite_time.py                     # the whole suite as `make test` runs it
    python benchmarks/suite_time.py --against a04f763 --modules tests/test_models.py tests/test_engine.py

The first form runs `make test`'s pytest command (2 xdist workers, coverage) with
``benchmarks/pytest_accounting.py`` and prints the wall time, then the modules by summed test time
with the CPU they took in the test process and in the subprocesses they waited for.

Why the second form: on this shared 2-core host the same suite took 9:57 and 12:15 an hour apart,
with the CPU time of untouched modules up to 1.9x (other tenants slow the cores themselves: steal
time stays near zero), so two full runs at different times cannot show what a change saved. It runs
the modules once from this checkout and once from a worktree at ``--against``, at the same time, each
pinned to its own core, serially with coverage: both see the same host, and the per-module ratio is
the change's own.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
MAKE_TEST = ["-n", "2", "--dist", "loadscope", "--cov", "--cov-report="]  # as the Makefile's `test`


def pytest_command(args: list[str], out: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, ACCOUNTING_OUT=str(out), PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    return [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_accounting", *args], env


def by_module(path: Path) -> dict[str, list[float]]:
    """module -> [tests, wall s, own CPU s, children's CPU s]."""
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for line in path.read_text().splitlines():
        r = json.loads(line)
        row = totals[r["test"].split("::")[0]]
        row[0] += 1
        row[1] += r["wall_s"]
        row[2] += r["self_cpu_s"]
        row[3] += r["child_cpu_s"]
    return dict(totals)


def whole_suite(top: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "accounting.jsonl"
        cmd, env = pytest_command(MAKE_TEST, out)
        started, load = time.perf_counter(), os.getloadavg()
        code = subprocess.call(cmd, cwd=ROOT, env=env)  # pytest's own report first: which tests failed, if any
        wall = time.perf_counter() - started
        modules = by_module(out)
    tests = sum(r[0] for r in modules.values())
    print(f"make test's pytest: {wall:.0f} s wall ({wall / 60:.1f} min), exit {code}, {tests:.0f} tests; "
          f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"summed test time {sum(r[1] for r in modules.values()):.0f} s; CPU in the test processes "
          f"{sum(r[2] for r in modules.values()):.0f} s, in their subprocesses {sum(r[3] for r in modules.values()):.0f} s")
    print(f"{'wall s':>8} {'own CPU':>8} {'child CPU':>9} {'tests':>5}  module")
    for name, (n, w, own, child) in sorted(modules.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{w:8.1f} {own:8.1f} {child:9.1f} {n:5.0f}  {name}")
    return code


def paired(against: str, modules: list[str], swap: bool = False) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), against], cwd=ROOT, check=True)
        try:
            procs = {}
            trees = [("this checkout", ROOT), (against, base)]
            for core, (label, tree) in enumerate(trees[::-1] if swap else trees):
                out = Path(tmp) / f"{core}.jsonl"
                cmd, env = pytest_command(["-p", "no:xdist", "--cov", "--cov-report=", "--cov-fail-under=0", *modules], out)  # a subset: no coverage floor
                env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), env["PYTHONPATH"]])  # the tree's own diffprof
                procs[label] = (subprocess.Popen(["taskset", "-c", str(core % os.cpu_count()), *cmd], cwd=tree, env=env,  # type: ignore[operator]
                                                 stdout=subprocess.DEVNULL), out)
            codes = {label: p.wait() for label, (p, _) in procs.items()}
            results = {label: by_module(out) for label, (_, out) in procs.items()}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    new, old = results["this checkout"], results[against]
    print(f"exit codes: {codes}; each tree on its own core, serial, with coverage, at the same time "
          "(the two cores may differ: run again with --swap before trusting a small ratio)")
    print(f"{against + ' s':>12} {'now s':>8} {'ratio':>6}  module (wall; own + children's CPU in brackets)")
    for name in sorted(set(old) | set(new), key=lambda m: -old.get(m, [0, 0])[1]):
        o, n = old.get(name, [0, 0.0, 0.0, 0.0]), new.get(name, [0, 0.0, 0.0, 0.0])
        ratio = n[1] / o[1] if o[1] else float("nan")
        print(f"{o[1]:12.1f} {n[1]:8.1f} {ratio:6.2f}  {name}  [{o[2] + o[3]:.0f} -> {n[2] + n[3]:.0f} CPU s]")
    total_old, total_new = sum(r[1] for r in old.values()), sum(r[1] for r in new.values())
    print(f"{total_old:12.1f} {total_new:8.1f} {total_new / total_old:6.2f}  all")
    return max(codes.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--against", metavar="REV", help="compare with this git revision, paired (needs --modules)")
    parser.add_argument("--modules", nargs="+", default=[], help="test files for the paired comparison")
    parser.add_argument("--swap", action="store_true", help="paired: this checkout on the second core, REV on the first")
    parser.add_argument("--top", type=int, default=40, help="modules listed for the whole suite (default 40)")
    args = parser.parse_args()
    if args.against and not args.modules:
        parser.error("--against needs --modules (a paired run is serial: the whole suite would take an hour)")
    return paired(args.against, args.modules, args.swap) if args.against else whole_suite(args.top)


if __name__ == "__main__":
    sys.exit(main())
