"""Where `diffprof tune`'s default fidelity floor comes from (issue 17): PSNR and SSIM against a
converged reference beside prompt adherence, for every scheduler x step count tune searches on shapes-sd.

    python benchmarks/tune_fidelity.py                                  # 16 prompts, CPU, one thread
    python benchmarks/tune_fidelity.py --doc docs/benchmarks.md         # also write the table there
    python benchmarks/tune_fidelity.py --images /tmp/fidelity           # and the first prompt's images, to look at

Each cell is the `quality` suite's: the scheduler at that step count on the held-out shapes prompts
and seeds tune scores (adherence by the pixel detector; PSNR/SSIM against the reference solve tune
uses: dpmpp_2m at 100 steps, the same seeds). Adherence saturates: DDIM at 10 steps reads 1.0 while
its images carry speckle a 20-step solve does not; PSNR sees it. The table gives mean and min over
the prompts, and how far below the baseline's (the model's own scheduler at 50 steps) each lies; the
default floor (``diffprof.tune.constraints.FIDELITY_TOLERANCE_DB`` below the baseline) sits between
what a visibly speckled setting and a clean one read.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCHEDULERS = "default,ddim,euler,dpmpp_2m,unipc,pndm,deis,dpmpp_2m_karras"
STEPS = "6,8,10,12,15,20,25,30,50"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedulers", default=SCHEDULERS)
    parser.add_argument("--steps", default=STEPS)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--reference-steps", type=int, default=100)
    parser.add_argument("--db", help="results store (default: a temporary file)")
    parser.add_argument("--images", help="write the first prompt's image of every cell and the reference here (PNG)")
    parser.add_argument("--doc", help="markdown page whose tune-fidelity section gets the table")
    parser.add_argument("--section", default="tune-fidelity")
    args = parser.parse_args()

    import torch

    from diffprof.config import RunConfig
    from diffprof.report.markdown import pipe_table
    from diffprof.store import Store
    from diffprof.suites.runner import Runner
    from diffprof.tune.constraints import FIDELITY_TOLERANCE_DB

    torch.set_num_threads(1)
    db = args.db or str(Path(tempfile.mkdtemp(prefix="tune-fidelity-")) / "fidelity.db")
    cfg = RunConfig.from_mapping({
        "model": "shapes-sd", "device": "cpu", "threads": 1, "suites": ["quality"], "schedulers": args.schedulers.split(","),
        "step_counts": [int(s) for s in args.steps.split(",")], "quality": ["adherence", "convergence"], "quality_prompts": args.prompts,
        "reference_steps": args.reference_steps, "repeats": 1, "rounds": 1, "warmup": 0, "db": db, "report": None,
    })
    before, t0 = uptime(), time.perf_counter()
    with Store(db) as store:
        summary = Runner(cfg, store, command="benchmarks/tune_fidelity.py", progress=False).run()
        run = store.get_run(summary.run_id)
    after = uptime()
    rows, flagged = [], []
    base = next((c for c in run.cells if c.ok and c.labels["scheduler"] == "default" and c.labels["steps"] == 50), None)
    floor = float(np.mean(base.samples["psnr_db"])) - FIDELITY_TOLERANCE_DB if base is not None else float("nan")
    for cell in run.cells:
        if not cell.ok:
            print(f"{cell.labels}: {cell.error}", file=sys.stderr)
            continue
        psnr, ssim = np.asarray(cell.samples["psnr_db"]), np.asarray(cell.samples["ssim"])
        adherence = cell.metrics["adherence"]
        keeps = psnr.mean() >= floor
        rows.append([str(cell.labels["scheduler"]), str(cell.labels["steps"]), f"{adherence:.3f}", f"{psnr.mean():.1f}", f"{np.median(psnr):.1f}",
                     f"{psnr.min():.1f}", f"{psnr.mean() - floor - FIDELITY_TOLERANCE_DB:+.1f}", f"{ssim.mean():.3f}", f"{ssim.min():.3f}",
                     "yes" if keeps else "no"])
        if adherence >= 0.98 and not keeps:
            flagged.append(f"{cell.labels['scheduler']}/{cell.labels['steps']}")
    lines = [f"`python3 benchmarks/tune_fidelity.py {shlex.join(sys.argv[1:])}`", "",
             f"shapes-sd on the CPU, {args.prompts} held-out shapes prompts and seeds per cell; reference: dpmpp_2m at {args.reference_steps} steps "
             f"(tune's default); {(time.perf_counter() - t0) / 60:.1f} min.", "", f"Machine before: `{before}`", "", f"Machine after: `{after}`", "",
             *pipe_table(["scheduler", "steps", "adherence", "PSNR mean (dB)", "median", "min", "vs baseline", "SSIM mean", "min",
                          f"within {FIDELITY_TOLERANCE_DB:g} dB"], rows, [False, True, True, True, True, True, True, True, True, False]), "",
             f"Baseline: default at 50 steps; floor {floor:.1f} dB ({FIDELITY_TOLERANCE_DB:g} dB below it). "
             f"Adherence 0.98 or more but below the floor (what adherence alone would have accepted): "
             + (", ".join(flagged) if flagged else "none") + "."]
    text = "\n".join(lines)
    print(text)
    if args.images:
        save_images(cfg, run, Path(args.images))
    if args.doc:
        from diffprof.report.sections import write_section

        write_section(args.doc, args.section, text)


def save_images(cfg: object, run: object, folder: Path) -> None:
    """The first quality prompt's image for every cell, and its reference, to look at."""
    from dataclasses import replace

    from diffprof.engine import Engine
    from diffprof.quality.scoring import quality_pairs

    folder.mkdir(parents=True, exist_ok=True)
    engine = Engine.load(cfg.model, device="cpu")  # type: ignore[attr-defined]
    prompt, seed = quality_pairs(cfg, ("adherence", "convergence"))[0]  # type: ignore[arg-type]
    request = cfg.to_request()  # type: ignore[attr-defined]
    ref = engine.generate(replace(request, prompt=prompt, seed=seed, scheduler=cfg.reference_scheduler, steps=cfg.reference_steps, num_images=1))  # type: ignore[attr-defined]
    ref.images[0].resize((256, 256)).save(folder / "reference.png")
    for cell in run.cells:  # type: ignore[attr-defined]
        s, n = cell.labels["scheduler"], cell.labels["steps"]
        out = engine.generate(replace(request, prompt=prompt, seed=seed, scheduler=s, steps=n, num_images=1))
        out.images[0].resize((256, 256)).save(folder / f"{s}-{n}.png")
    print(f"images in {folder}")


if __name__ == "__main__":
    main()
