"""Where a regression gate's noise comes from, read from the store a calibration left (issue 17).

    python3 benchmarks/gate_noise.py --db /tmp/cal/gate.db            # the runs of compare_calibration.py
    python3 benchmarks/gate_noise.py --db results.db --steps 8 --metric s_per_image

For the finished runs of the store whose config has ``--steps`` (the base runs of
`compare_calibration.py`), per cell: how much one call scatters from round to round, and how much
whole runs scatter (SD and a robust SD, raw and divided by the speed probe): the first is what more
rounds average out, the second is the drift between processes that only more processes do. Then
the probe against the runs: the correlation of a run's probe median with its mean cell time, and
the gain (how many percent the model moves per percent the probe moves), across runs and round by
round within them. docs/benchmarks.md quotes these for the quiet calibration of 2026-12-02.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from diffprof.store import Store


def sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def robust_sd(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the SD a normal sample would have, a few spiked runs aside."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--steps", type=int, default=8, help="only runs whose config has these steps (default 8)")
    parser.add_argument("--metric", default="s_per_image")
    args = parser.parse_args()
    with Store(args.db) as store:
        runs = [store.get_run(r.id) for r in store.list_runs(limit=None) if r.status == "finished"]
    runs = [r for r in runs if r.config.get("steps") == args.steps and all(args.metric in c.rounds and "probe_s" in c.rounds for c in r.cells if c.ok)]
    if len(runs) < 3:
        raise SystemExit(f"{args.db}: {len(runs)} finished runs at {args.steps} steps with per-round {args.metric} and probes; need 3")
    print(f"{len(runs)} runs at {args.steps} steps ({args.metric}, log scale, % = SD of the log)")
    by_cell: dict[str, dict[str, list]] = {}
    for run in runs:
        for cell in run.cells:
            if not cell.ok:
                continue
            name = ",".join(f"{v}" for v in cell.labels.values())
            t, p = np.log(cell.rounds[args.metric]), np.log(cell.rounds["probe_s"])
            entry = by_cell.setdefault(name, {"round": [], "round_adj": [], "run": [], "run_adj": []})
            entry["round"].append(sd(t))
            entry["round_adj"].append(sd(t - p))
            entry["run"].append(t.mean())
            entry["run_adj"].append((t - p).mean())
    print(f"{'cell':12} {'round SD':>9} {'adjusted':>9} {'run SD':>8} {'adjusted':>9} {'robust':>7} {'adjusted':>9}")
    for name, e in by_cell.items():
        run, adj = np.array(e["run"]), np.array(e["run_adj"])
        print(f"{name:12} {100 * statistics.median(e['round']):8.2f}% {100 * statistics.median(e['round_adj']):8.2f}% "
              f"{100 * sd(run):7.2f}% {100 * sd(adj):8.2f}% {100 * robust_sd(run):6.2f}% {100 * robust_sd(adj):8.2f}%")
    t = np.array([np.mean([np.log(statistics.median(c.rounds[args.metric])) for c in r.cells if c.ok]) for r in runs])
    p = np.array([np.log(statistics.median([v for c in r.cells if c.ok for v in c.rounds["probe_s"]])) for r in runs])
    keep = np.abs(t - np.median(t)) < 3 * robust_sd(t)
    for label, mask in (("all runs", np.ones_like(keep)), (f"without {int((~keep).sum())} outlying runs", keep)):
        tt, pp = t[mask], p[mask]
        r = float(np.corrcoef(tt, pp)[0, 1])
        print(f"run level, {label}: time SD {100 * sd(tt):.2f}%, probe SD {100 * sd(pp):.2f}%, r = {r:+.2f}, "
              f"gain {r * sd(tt) / sd(pp):.2f}, divided by the probe {100 * sd(tt - pp):.2f}%")
    rounds = min(len(c.rounds[args.metric]) for r in runs for c in r.cells if c.ok)
    rt = np.array([[np.mean([np.log(c.rounds[args.metric][k]) for c in r.cells if c.ok]) for k in range(rounds)] for r in runs])
    rp = np.array([[np.mean([np.log(c.rounds["probe_s"][k]) for c in r.cells if c.ok]) for k in range(rounds)] for r in runs])
    dt, dp = (rt - rt.mean(1, keepdims=True)).ravel(), (rp - rp.mean(1, keepdims=True)).ravel()
    r = float(np.corrcoef(dt, dp)[0, 1])
    print(f"round level within runs: time SD {100 * dt.std():.2f}%, probe SD {100 * dp.std():.2f}%, r = {r:+.2f}, gain {r * dt.std() / dp.std():.2f}")


if __name__ == "__main__":
    main()
