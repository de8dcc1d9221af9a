"""How long a refused flag or config takes to answer, and what the refusal path imports.

    python benchmarks/refusal_latency.py               # every case, 3 rounds each
    python benchmarks/refusal_latency.py --rounds 5

Each case is a real ``diffprof`` process (the console script of this environment) that must be
refused: exit 2, one ``error:`` line and one ``hint:`` line on stderr. Its wall time is the median
of the rounds; ``torch`` / ``diffusers`` say whether the refusal imported them (read from
``python -X importtime``). The target (issue 18): every refusal under 1 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0

#: (name, arguments, config file text or None): ``{config}`` in the arguments is replaced by that file.
CASES: list[tuple[str, list[str], str | None]] = [
    ("steps 0", ["bench", "--steps", "0"], None),
    ("unknown scheduler", ["bench", "--scheduler", "nope"], None),
    ("guidance nan", ["bench", "--guidance", "nan"], None),
    ("unknown suite", ["bench", "-s", "nope"], None),
    ("unknown switch", ["bench", "-O", "nope"], None),
    ("unknown memory option", ["bench", "--memory-optimizations", "vae_slicing+nope"], None),
    ("unknown precision", ["bench", "--precision", "fp13"], None),
    ("unknown flag", ["bench", "--stpes", "3"], None),
    ("flag not a number", ["bench", "--steps", "abc"], None),
    ("config wrong type", ["bench", "--config", "{config}"], "profile_level: 0\n"),
    ("config unknown key", ["bench", "--config", "{config}"], "stpes: 3\n"),
    ("config bad list", ["bench", "--config", "{config}"], "batch_sizes: euler\n"),
    ("unknown model", ["bench", "--model", "tiny-sdd"], None),
    ("dry-run bad config", ["bench", "--dry-run", "--config", "{config}"], "mask: {a: 1}\n"),
    ("resume unknown run", ["bench", "--resume", "7", "--db", "{tmp}/none.db"], None),
    ("generate batch 0", ["generate", "x", "--batch", "0"], None),
    ("generate unknown scheduler", ["generate", "x", "--scheduler", "nope"], None),
    ("tune unknown precision", ["tune", "--precisions", "fp13"], None),
    ("calibrate bad size", ["calibrate", "--resolutions", "7x7"], None),
    ("estimate negative budget", ["estimate", "--max-memory", "-1", "--db", "{tmp}/none.db"], None),
]


def diffprof_command() -> list[str]:
    exe = Path(sys.executable).with_name("diffprof")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "diffprof"]


def one(args: list[str], cwd: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    out = subprocess.run([*diffprof_command(), *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    return time.perf_counter() - t0, out


def imports(args: list[str], cwd: str) -> set[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "diffprof", *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    names = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return {top for top in ("torch", "diffusers", "transformers") if top in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="diffprof-refusal-")
    env_note = f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
    print(f"refusal latency: {len(CASES)} cases x {opts.rounds} rounds ({env_note}); target < {TARGET_S:g} s")
    print(f"{'case':28} {'median s':>9} {'max s':>7}  exit  lines  imports")
    slow = bad = 0
    try:
        for n, (name, args, text) in enumerate(CASES):
            config = Path(tmp) / f"case{n}.yaml"
            if text is not None:
                config.write_text(text)
            argv = [a.replace("{config}", str(config)).replace("{tmp}", tmp) for a in args]
            times, last = [], None
            for _ in range(opts.rounds):
                seconds, last = one(argv, tmp)
                times.append(seconds)
            assert last is not None
            lines = [line for line in last.stderr.splitlines() if line.strip()]
            shape_ok = last.returncode == 2 and len(lines) == 2 and lines[0].startswith("error:") and lines[1].startswith("hint:")
            heavy = imports(argv, tmp)
            median = statistics.median(times)
            slow += median >= TARGET_S
            bad += not shape_ok
            shape = "ok" if shape_ok else "BAD"
            print(f"{name:28} {median:9.2f} {max(times):7.2f}  {last.returncode:>4}  {shape:>5}  {', '.join(sorted(heavy)) or '-'}")
            if not shape_ok:
                print("      " + "\n      ".join(lines[:4]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(CASES) - slow} of {len(CASES)} under {TARGET_S:g} s; {len(CASES) - bad} of {len(CASES)} exit 2 with one error: and one hint: line")
    return 0 if not (slow or bad) else 1


if __name__ == "__main__":
    sys.exit(main())
