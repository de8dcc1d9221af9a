"""Fault injection: SIGINT, SIGTERM and SIGKILL at random moments of `bench`, `tune` and `calibrate`.

    python benchmarks/interrupt_campaign.py                 # 33 interruptions (11 per command), seed 0
    python benchmarks/interrupt_campaign.py --per-kind 4 --seed 1

Each interruption starts the command as a real process on the built-in tiny model (see
tests/interrupt_harness.py), waits for a random number of stored cells (0 = only the run recorded)
plus a random delay, sends the signal, then resumes (bench, calibrate: `diffprof bench --resume
latest`) or reruns (tune, which has no resume) until it exits 0. Checked per interruption: the exit
code (130 / 143 / -9), that SIGINT/SIGTERM printed what was kept and the command to continue, that
no cell stored ok before the signal was lost, changed or stored twice, and that the resumed run
holds every cell exactly once. Every few interruptions, a resume started while the first process
still measures must be refused. Printed: the tallies.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import interrupt_harness as harness  # noqa: E402

EXPECTED = harness.EXPECTED
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def live_resume_refused(folder: Path) -> bool:
    """A second `bench --resume latest` while the first process measures: refused (exit 2, the owner named)."""
    db = folder / "runs.db"
    first = harness.start("bench-long", db, folder)
    try:
        if not harness.wait_for(first, lambda: harness.running(db) and len(harness.cells(db)) >= 1):
            return False
        second = subprocess.run([sys.executable, "-m", "diffprof", "bench", "--resume", "latest", "--db", str(db), "--no-report", "--no-progress"],
                                cwd=folder, env=harness.env(), capture_output=True, text=True, timeout=300)
        refused = second.returncode == 2 and "still being measured by pid" in second.stderr
        alive = first.poll() is None
        return refused and alive
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            first.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=11, help="interruptions per command (3 commands)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--live-checks", type=int, default=3, help="resumes of a live run that must be refused")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    plan = [(kind, SIGNALS[i % 3]) for kind in ("bench", "calibrate", "tune") for i in range(opts.per_kind)]
    rng.shuffle(plan)
    tally: Counter[str] = Counter()
    problems: list[str] = []
    t0 = time.perf_counter()
    print(f"interrupt campaign: {len(plan)} interruptions of bench, calibrate and tune (tiny-sd, CPU), seed {opts.seed}")
    print(f"{'#':>3} {'command':10} {'signal':8} {'after':>5} {'delay':>6} {'exit':>5} {'said':>5} {'kept':>5} {'lost':>5} {'resume':>7} {'cells':>6}")
    n, attempts = 0, 3 * len(plan)
    while plan and n < attempts:
        kind, sig = plan[0]
        n += 1
        with tempfile.TemporaryDirectory(prefix="diffprof-int-") as tmp:
            folder = Path(tmp)
            after = rng.choice(harness.AFTER[kind])
            delay = round(rng.uniform(0, 1.0 if kind != "tune" else 0.3), 2)
            event = harness.interrupt(kind, sig, folder, after_cells=after, delay_s=delay)
            if event.finished_early:  # drawn again: every planned interruption happens
                tally["finished before the signal"] += 1
                print(f"{n:3} {kind:10} {signal.Signals(sig).name:8} {after:5} {delay:6} finished before the signal (drawn again)")
                continue
            plan.pop(0)
            tally["interruptions"] += 1
            tally[f"{kind} {signal.Signals(sig).name}"] += 1
            code_ok = event.code == harness.EXIT[sig]
            said = event.said_what_was_kept if sig != signal.SIGKILL else True
            code, after_cells, out = harness.resume_until_done(kind, folder)
            keys = [key for _, key, _, _ in after_cells]
            duplicated = len(keys) - len(set(keys))
            lost = event.lost
            if kind != "tune":  # the resumed run must hold what was kept, unchanged
                kept = {key: (cid, fin) for cid, key, status, fin in event.stored_after if status == "ok"}
                now = {key: (cid, fin) for cid, key, status, fin in after_cells}
                lost += [k for k, v in kept.items() if now.get(k) != v]
            complete = code == 0 and (EXPECTED[kind] is None or (len(set(keys)) == EXPECTED[kind] and all(s == "ok" for _, _, s, _ in after_cells)))
            tally["exit code as expected"] += code_ok
            tally["said what was kept (SIGINT/SIGTERM)"] += said and sig != signal.SIGKILL
            tally["cells kept at the signal"] += len([c for c in event.stored_after if c[2] == "ok"])
            tally["finished cells lost"] += len(lost)
            tally["cells stored twice"] += duplicated
            tally["resumes that completed the run"] += complete
            print(f"{n:3} {kind:10} {signal.Signals(sig).name:8} {after:5} {delay:6} {event.code:5} {'yes' if said else 'NO':>5} "
                  f"{len([c for c in event.stored_after if c[2] == 'ok']):5} {len(lost):5} {'ok' if complete else 'FAIL':>7} {len(set(keys)):6}")
            if not (code_ok and said and complete) or lost or duplicated:
                problems.append(f"#{n} {kind} {signal.Signals(sig).name}: exit {event.code}; stderr: {event.stderr[-800:]!r}; resume exit {code}: {out[-400:]!r}")
    for _ in range(opts.live_checks):
        with tempfile.TemporaryDirectory(prefix="diffprof-live-") as tmp:
            refused = live_resume_refused(Path(tmp))
        tally["live-run resumes tried"] += 1
        tally["live-run resumes refused"] += refused
        if not refused:
            problems.append("a resume of a live run was not refused")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    for key in ("interruptions", *sorted(k for k in tally if k.split()[0] in ("bench", "calibrate", "tune")), "exit code as expected",
                "said what was kept (SIGINT/SIGTERM)", "cells kept at the signal", "finished cells lost", "cells stored twice",
                "resumes that completed the run", "live-run resumes tried", "live-run resumes refused", "finished before the signal"):
        print(f"  {key:40} {tally[key]}")
    for p in problems:
        print("PROBLEM", p)
    return 0 if not problems and tally["interruptions"] >= 30 else 1


if __name__ == "__main__":
    sys.exit(main())
