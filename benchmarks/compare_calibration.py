"""How often does `diffprof compare` cry wolf, and how often does it catch a real slowdown? (issue 17)

    python benchmarks/compare_calibration.py                      # 20 A/A + 10 slowdown pairs, tiny-sd, CPU
    python benchmarks/compare_calibration.py --pairs 4 --detect 2 # a quick look
    python benchmarks/compare_calibration.py --busy-cores 2 --busy-seconds 5   # heavier, shorter load
    python benchmarks/compare_calibration.py --doc docs/benchmarks.md          # also write the table there
    bash benchmarks/gpu_compare_calibration.sh                    # the GPU variant (lent H200)

Every run is its own `diffprof bench` process (default: `-s schedulers --model tiny-sd --steps 8
--threads 1`, 6 cells, default rounds and repeats), stored in one store, as a CI job's runs are:

- **A/A pairs**: two identical runs. With ``--busy-every 2`` every second pair runs a busy loop on
  ``--busy-cores`` cores beside one of its runs (A and B alternately), for the whole run or its first
  ``--busy-seconds``. A pair judged a regression is a false alarm.
- **Slowdown pairs**: A the base command, B with ``--slow`` added (default ``--steps 9``: about 12%
  more work, same labels, settings differ), loaded the same way. A pair judged a regression is a
  detection; ``too noisy`` or ``host busy`` is inconclusive (said, not missed); anything else missed.
- ``--slow-label steps=50:51`` instead compares, within chained pairs, A's cell labelled 50 with
  B's cell labelled 51 (the base command sweeps both): each process then serves an A/A pair and a
  slowdown pair (what the GPU variant does to stay inside its time).

Each pair is judged as `diffprof compare` does (history of earlier runs in the store as a noise
floor, host-busy check, times adjusted for the speed probe), then without one defence at a time:
without the history, without the host-busy check (what the statistics alone would say), without
the speed adjustment, and without either of the last two. The uptime line before and after, and each run's others' CPU load,
are printed. Exit code 1 when the gate's false-alarm count exceeds ``--max-false`` (default 1).

``--judge DB`` measures nothing: it judges the chained pairs of a store an earlier (perhaps cut-short)
run of this script left, every finished run against the next (what a GPU call's time limit leaves).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BASE = "-s schedulers --model tiny-sd --steps 8 --threads 1"
BUSY = "while True: pass"
#: How each pair is judged: as compare does, then without one of its defences at a time.
VIEWS = ("gate", "no history", "no busy check", "not speed-adjusted", "no busy check, not speed-adjusted")


@dataclass
class Pair:
    kind: str  # "A/A" or "slowdown"
    a: int
    b: int
    busy: str  # "", "A" or "B"
    outcomes: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, str] = field(default_factory=dict)
    needs: str = ""  # what the gate's too-noisy cells ask for


class Load:
    """Busy-loop processes beside a run: ``cores`` of them, stopped after ``seconds`` (0: at the end)."""

    def __init__(self, cores: int, seconds: float) -> None:
        self.cores, self.seconds = cores, seconds
        self.procs: list[subprocess.Popen[bytes]] = []
        self.timer: threading.Timer | None = None

    def __enter__(self) -> Load:
        self.procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(self.cores)]
        if self.seconds > 0:
            self.timer = threading.Timer(self.seconds, self.stop)
            self.timer.start()
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.stop()


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return Path("/proc/loadavg").read_text().strip()


def bench(args: argparse.Namespace, db: Path, name: str, extra: str, busy: bool) -> tuple[int, float]:
    """One `diffprof bench` process; returns the run id and its wall seconds."""
    cmd = [sys.executable, "-m", "diffprof", "bench", *shlex.split(args.base), *shlex.split(extra),
           "--db", str(db), "--no-report", "--no-progress", "--name", name]
    t0 = time.perf_counter()
    if busy:
        with Load(args.busy_cores, args.busy_seconds):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"bench failed (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    from diffprof.store import Store

    with Store(db) as store:
        return store.resolve(name), wall


def classify(kind: str, comparison: Any) -> str:
    verdicts = {c.verdict for c in comparison.cells}
    if comparison.has_regression:
        return "false alarm" if kind == "A/A" else "flagged"
    if verdicts & {"too noisy", "host busy", "not significant"}:
        return "inconclusive"
    return "clean" if kind == "A/A" else "missed"


def relabel(run: Any, key: str, value: str, to: str | None = None) -> Any:
    """``run`` with only its cells labelled ``key=value`` (relabelled ``key=to`` when given)."""
    cells = [c for c in run.cells if str(c.labels.get(key)) == value]
    if to is not None:
        cells = [replace(c, labels={**c.labels, key: type(c.labels[key])(to) if not isinstance(c.labels[key], str) else to}) for c in cells]
    return replace(run, cells=cells)


def judge(store: Any, pair: Pair, args: argparse.Namespace) -> None:
    from diffprof.analysis.compare import compare

    run_a, run_b = store.get_run(pair.a), store.get_run(pair.b)
    if pair.kind == "slowdown" and args.slow_label:
        key, _, values = args.slow_label.partition("=")
        low, _, high = values.partition(":")
        run_a, run_b = relabel(run_a, key, low), relabel(run_b, key, high, to=low)
    earlier = store.history([c.key for c in run_a.cells if c.ok], before=max(pair.a, pair.b))
    views = {
        "gate": compare(run_a, run_b, args.threshold, correction=args.correction, history=earlier),
        "no history": compare(run_a, run_b, args.threshold, correction=args.correction),
        "no busy check": compare(replace(run_a, machine={}), replace(run_b, machine={}), args.threshold, correction=args.correction, history=earlier),
        "not speed-adjusted": compare(run_a, run_b, args.threshold, correction=args.correction, history=earlier, adjust_speed=False),
        "no busy check, not speed-adjusted": compare(replace(run_a, machine={}), replace(run_b, machine={}), args.threshold,
                                                     correction=args.correction, history=earlier, adjust_speed=False),
    }
    for view, comparison in views.items():
        pair.outcomes[view] = classify(pair.kind, comparison)
        pair.summaries[view] = comparison.summary()
    noisy = [c for c in views["gate"].cells if c.verdict == "too noisy"]
    rounds = [c.rounds_needed for c in noisy if c.rounds_needed]
    between = sum(c.rounds_needed is None and "--isolate" in c.note for c in noisy)
    pair.needs = ", ".join(filter(None, [f"up to {max(rounds)} rounds" if rounds else "", f"{between} cells drift between runs (--isolate)" if between else ""]))


def others(store: Any, rid: int) -> str:
    from diffprof.analysis.machine import host_load

    load = host_load(store.get_run(rid).machine)
    return f"{load.others_cores:.2f}{'*' if load.busy else ''}" if load.recorded else "-"


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(kind, loaded side) of every independent pair, in order: every ``busy_every``-th pair of each
    kind has a busy loop beside its A, then beside its B, alternately."""
    out = []
    for kind, count in (("A/A", args.pairs), ("slowdown", args.detect)):
        for i in range(count):
            loaded = args.busy_every > 0 and i % args.busy_every == args.busy_every - 1
            out.append((kind, ("A" if (i // args.busy_every) % 2 == 0 else "B") if loaded else ""))
    return out


def store_path(args: argparse.Namespace) -> Path:
    if args.db and args.db.endswith(".db"):
        return Path(args.db)
    return Path(args.db or tempfile.mkdtemp(prefix="compare-calibration-")) / "calibration.db"


def chained(store: Any, args: argparse.Namespace) -> list[Pair]:
    """The chained pairs of an existing store: each finished run against the next finished one."""
    runs = sorted(r.id for r in store.list_runs(limit=None) if r.status == "finished")
    pairs = []
    for a, b in zip(runs, runs[1:]):
        pairs.append(Pair("A/A", a, b, ""))
        if args.slow_label:
            pairs.append(Pair("slowdown", a, b, ""))
    return pairs


START = time.perf_counter()


def finished_chain(db: Path) -> list[int]:
    """The finished runs of a chain already in the store (none when it does not exist yet)."""
    if not db.exists():
        return []
    from diffprof.store import Store

    with Store(db) as store:
        return sorted(r.id for r in store.list_runs(limit=None) if r.status == "finished")


def run(args: argparse.Namespace) -> list[Pair]:
    from diffprof.store import Store

    db = store_path(args)
    if args.judge:
        with Store(db) as store:
            pairs = chained(store, args)
            print(f"judging {len(pairs)} pairs of {db}", flush=True)
            for pair in pairs:
                judge(store, pair, args)
        return pairs
    print(f"store {db}; base: diffprof bench {args.base}", flush=True)
    pairs: list[Pair] = []
    for i in range(args.seed_runs if args.pairing != "chain" or not finished_chain(db) else 0):
        rid, wall = bench(args, db, f"seed{i}", "", False)
        print(f"seed run {rid}: {wall:.0f} s", flush=True)
    if args.pairing == "chain":  # run j against run j + 1; every busy_every-th run loaded
        done = finished_chain(db)
        if done:  # a chain an earlier call began (and a device call's time limit cut): go on from it
            print(f"continuing the chain of {db}: {len(done)} finished runs", flush=True)
            previous, wall = done[-1], 0.0
        else:
            previous, wall = bench(args, db, "chain0", "", False)
        previous_busy = False
        for i in range(max(1, len(done)), args.pairs + 1):
            if args.deadline and time.perf_counter() - START + 1.2 * wall > args.deadline:
                print(f"stopping before run {i}: another {wall:.0f} s would pass --deadline {args.deadline:.0f} s; "
                      "rerun the same command to go on", flush=True)
                break
            busy = args.busy_every > 0 and i % args.busy_every == 0
            rid, wall = bench(args, db, f"chain{i}" + (f"-{os.getpid()}" if done else ""), "", busy)
            side = "B" if busy else "A" if previous_busy else ""
            pairs.append(Pair("A/A", previous, rid, side))
            if args.slow_label:
                pairs.append(Pair("slowdown", previous, rid, side))
            print(f"pair {i}: runs {previous} vs {rid}{' (busy ' + side + ')' if side else ''}, {wall:.0f} s", flush=True)
            previous, previous_busy = rid, busy
        if done:  # judge the whole chain, the earlier call's runs included
            with Store(db) as store:
                pairs = chained(store, args)
    else:
        for i, (kind, busy) in enumerate(plan(args)):
            extra = args.slow if kind == "slowdown" else ""
            a, wall_a = bench(args, db, f"p{i}a", "", busy == "A")
            b, wall_b = bench(args, db, f"p{i}b", extra, busy == "B")
            pairs.append(Pair(kind, a, b, busy))
            print(f"pair {i + 1} ({kind}{', busy ' + busy if busy else ''}): runs {a} vs {b}, {wall_a:.0f} + {wall_b:.0f} s", flush=True)
    with Store(db) as store:
        for pair in pairs:
            judge(store, pair, args)
        for pair in pairs:
            print(f"{pair.kind:8} {pair.a:3} vs {pair.b:3} busy={pair.busy or '-'} others A/B {others(store, pair.a)}/{others(store, pair.b)} cores: "
                  + "; ".join(f"{v}: {pair.outcomes[v]} ({pair.summaries[v]})" for v in pair.outcomes)
                  + (f"; too noisy needs {pair.needs}" if pair.needs else ""), flush=True)
    return pairs


def rates(pairs: list[Pair], view: str) -> list[list[str]]:
    rows = []
    for kind, good in (("A/A", "false alarm"), ("slowdown", "flagged")):
        for load in ("idle", "busy", "all"):
            chosen = [p for p in pairs if p.kind == kind and (load == "all" or (p.busy != "") == (load == "busy"))]
            if not chosen:
                continue
            counts = {o: sum(p.outcomes[view] == o for p in chosen) for o in ("false alarm", "clean", "flagged", "missed", "inconclusive")}
            shown = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
            rows.append([kind, load, str(len(chosen)), f"{counts[good]} ({100 * counts[good] / len(chosen):.0f}%)", shown])
    return rows


def report(pairs: list[Pair], args: argparse.Namespace, before: str, after: str, seconds: float) -> str:
    from diffprof.report.markdown import pipe_table

    lines = [f"`python3 benchmarks/compare_calibration.py {shlex.join(sys.argv[1:])}`", "",
             f"Base run: `diffprof bench {args.base}`; slowdown: " + (f"label {args.slow_label}" if args.slow_label else f"`{args.slow}`")
             + f"; busy loop on {args.busy_cores} core(s) " + (f"for {args.busy_seconds:g} s" if args.busy_seconds else "for the whole run")
             + f" beside one run of {_every(args.busy_every)}; threshold {args.threshold:.0%}, correction {args.correction}; {seconds / 60:.1f} min.", "",
             f"Machine before: `{before}`", "", f"Machine after: `{after}`", ""]
    for view in VIEWS:
        lines += [f"**{view}**" + (" (what `diffprof compare` does)" if view == "gate" else ""), ""]
        lines += pipe_table(["pairs", "load", "n", "false alarms / detections", "outcomes"], rates(pairs, view), [False, False, True, True, False])
        lines.append("")
    needs = sorted({f"{p.kind}: {p.needs}" for p in pairs if p.needs})
    if needs:
        lines += ["Too noisy cells asked for: " + "; ".join(needs) + ".", ""]
    return "\n".join(lines)


def _every(n: int) -> str:
    """'every pair', 'every 2nd pair', 'every 3rd pair', 'every 11th pair'."""
    if n <= 0:
        return "no pair"
    if n == 1:
        return "every pair"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} pair"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20, help="A/A pairs (default 20)")
    parser.add_argument("--detect", type=int, default=10, help="slowdown pairs (default 10)")
    parser.add_argument("--base", default=BASE, help=f"bench options of every run (default: {BASE!r})")
    parser.add_argument("--slow", default="--steps 9", help="options added to B of a slowdown pair (default: --steps 9)")
    parser.add_argument("--slow-label", default="", help="KEY=FROM:TO: the slowdown is B's cell KEY=TO against A's KEY=FROM, in chained pairs")
    parser.add_argument("--busy-every", type=int, default=2, help="load one run of every Nth pair (0: never; default 2)")
    parser.add_argument("--busy-cores", type=int, default=1, help="busy-loop processes beside a loaded run (default 1)")
    parser.add_argument("--busy-seconds", type=float, default=0.0, help="stop the load after this many seconds (default 0: the whole run)")
    parser.add_argument("--pairing", choices=("independent", "chain"), default="independent", help="independent pairs, or run i against run i+1")
    parser.add_argument("--seed-runs", type=int, default=0, help="base runs stored first, as the history a CI baseline has (default 0)")
    parser.add_argument("--threshold", type=lambda t: float(t.rstrip("%")) / (100 if t.endswith("%") else 1), default=0.05)
    parser.add_argument("--correction", default="bh", choices=("bh", "holm", "none"))
    parser.add_argument("--db", help="store folder or .db file (default: a new temporary folder)")
    parser.add_argument("--judge", action="store_true", help="measure nothing: judge the chained pairs of the finished runs in --db")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="chain: start no run that would end after this many seconds; the same command later goes on (0: none)")
    parser.add_argument("--max-false", type=int, default=1, help="exit 1 when the gate has more false alarms than this")
    parser.add_argument("--json", help="write the pairs and their outcomes here")
    parser.add_argument("--doc", help="markdown page whose compare-calibration section gets the tables")
    parser.add_argument("--section", default="compare-calibration", help="section key in --doc")
    args = parser.parse_args()
    before, t0 = uptime(), time.perf_counter()
    print(f"before: {before}", flush=True)
    pairs = run(args)
    after = uptime()
    print(f"after: {after}", flush=True)
    text = report(pairs, args, before, after, time.perf_counter() - t0)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps([p.__dict__ for p in pairs], indent=1))
    if args.doc:
        from diffprof.report.sections import write_section

        write_section(args.doc, args.section, text)
    false = sum(p.kind == "A/A" and p.outcomes["gate"] == "false alarm" for p in pairs)
    sys.exit(1 if false > args.max_false else 0)


if __name__ == "__main__":
    main()
