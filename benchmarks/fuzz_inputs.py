"""Generated configs and flag sets through every entry point: accepted, or refused in two lines; never a traceback.

    python benchmarks/fuzz_inputs.py                  # 2000 cases (the issue's bar), seed 0
    python benchmarks/fuzz_inputs.py --cases 500 --seed 3

Each case is drawn from the schema's own declarations (tests/input_cases.py): a mapping of fields
and SEOConfig aliases with right and wrong values (types, range edges, NaN/inf, huge ints, nested
lists and mappings, numbers in quotes, None, unknown keys), sent through ``RunConfig.from_mapping``
plus the registry checks (Python), through a YAML, a JSON and a TOML file (``diffprof bench
--dry-run --config FILE``), and a command line of a random command's flags (``--dry-run``). The
CLI runs in process (``diffprof.cli.app.main``), so the 2-core machine does it in minutes.
Printed: the tallies per entry point (accepted / refused / broken) and the first broken cases.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

import input_cases as cases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="configs and flag sets drawn (each config goes through 4 entry points)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reasons", type=int, default=0, help="also print the N commonest refusals")
    opts = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    tallies: dict[str, Counter[str]] = {k: Counter() for k in ("python", "yaml", "json", "toml", "flags")}
    broken: list[tuple[str, str, str]] = []
    reasons: Counter[str] = Counter()
    folder = Path(tempfile.mkdtemp(prefix="diffprof-fuzz-"))
    db = str(folder / "fuzz.db")
    t0 = time.perf_counter()

    def record(entry: str, case: object, outcome: cases.Outcome) -> None:
        tallies[entry][outcome.kind] += 1
        if outcome.kind == "broken" and len(broken) < 20:
            broken.append((entry, repr(case)[:300], outcome.detail[-600:]))
        if outcome.kind == "refused":
            reasons[outcome.detail.split(",")[0][:70]] += 1

    @seed(opts.seed)
    @settings(max_examples=opts.cases, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=cases.config_mapping(), flags=cases.flag_set())
    def one(data: dict, flags: list[str]) -> None:
        record("python", data, cases.from_mapping_outcome(data))
        for fmt in ("yaml", "json", "toml"):
            path = cases.write_config(data, folder, fmt)
            if path is not None:
                record(fmt, data, cases.cli_outcome(["bench", "--dry-run", "--config", str(path), "--db", db]))
        record("flags", flags, cases.cli_outcome([*flags, "--db", db] if flags[0] != "generate" else flags))

    one()
    seconds = time.perf_counter() - t0
    total = Counter[str]()
    print(f"input fuzz: {opts.cases} generated configs + {opts.cases} flag sets, {seconds:.0f} s")
    print(f"{'entry point':12} {'cases':>6} {'accepted':>9} {'refused':>8} {'broken':>7}")
    for entry, tally in tallies.items():
        n = sum(tally.values())
        total.update(tally)
        print(f"{entry:12} {n:6} {tally['accepted']:9} {tally['refused']:8} {tally['broken']:7}")
    print(f"{'all':12} {sum(total.values()):6} {total['accepted']:9} {total['refused']:8} {total['broken']:7}")
    print("tracebacks / refusals without exactly one error: and one hint: line:", total["broken"])
    if opts.reasons:
        for reason, n in reasons.most_common(opts.reasons):
            print(f"  {n:5}  {reason}")
    for entry, case, detail in broken:  # noqa: B007
        print(f"--- broken ({entry}): {case}\n{detail}")
    return 0 if not total["broken"] else 1


if __name__ == "__main__":
    sys.exit(main())
