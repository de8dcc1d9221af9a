"""Screenshots of the reports for docs/: the demo report, a ~50-cell report on tiny-sd, and a
comparison report (two runs of a 6-cell scheduler sweep), each at 1400 and 900 px in headless Chromium.

    python scripts/report_screenshots.py                      # measures the runs first (~11 min on 2 cores)
    python scripts/report_screenshots.py --demo-db D --wide-db W --compare-db C   # stores measured before (C: its last two runs)

Each page is checked as the tests check it (no horizontal overflow, no overlapping figure text, no
console error, no request) before its screenshot is kept; the PNGs are reduced to a palette so
each stays a few hundred KB. Prints the HTML size and PNG size of each page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from diffprof.report import ReportOptions, get_renderer
from diffprof.report.browser import Browser
from diffprof.store import Store

#: make demo's run: the quick suites on the default model, one thread.
DEMO = ["--threads", "1"]
#: About 50 cells on tiny-sd: a scheduler x steps quality sweep beside the quick suites and guidance.
WIDE = ["--model", "tiny-sd", "--threads", "1", "-s", "quality,schedulers,steps,resolutions,batch,memory,guidance",
        "--width", "64", "--height", "64", "--repeats", "3"]
#: The comparison: two runs of the sweep issue 17's gate was calibrated on.
COMPARE = ["-s", "schedulers", "--model", "tiny-sd", "--steps", "8", "--threads", "1"]
WIDTHS = (1400, 900)


def bench(args: list[str], db: Path) -> None:
    cmd = [sys.executable, "-m", "diffprof", "bench", *args, "--db", str(db), "--no-report", "--no-progress"]
    print("measuring:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=False)  # failed cells (exit 3) are part of what a report shows


def render(db: Path, out: Path) -> Path:
    with Store(db) as store:
        run = store.get_run("latest", artifacts=True)
    out.write_text(get_renderer("html").render(run, ReportOptions()), encoding="utf-8")
    return out


def compare_page(db: Path | None, work: Path) -> Path:
    """``diffprof compare latest~1 latest`` as html, measuring the two runs first when no store is given."""
    from diffprof.report.comparison import get_comparison_renderer
    from diffprof.store.compare import compare_runs

    if db is None:
        db = work / "compare.db"
        for _ in range(2):
            bench(COMPARE, db)
    with Store(db) as store:
        result = compare_runs(store, "latest~1", "latest")
    out = work / "compare.html"
    out.write_text(get_comparison_renderer("html").render(result), encoding="utf-8")
    return out


def shrink(path: Path) -> int:
    """A 256-colour palette: a page of text and charts loses nothing visible and most of its size."""
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-db", type=Path, help="store holding the demo run (default: measure it)")
    parser.add_argument("--wide-db", type=Path, help="store holding the ~50-cell tiny-sd run (default: measure it)")
    parser.add_argument("--pages", default="demo,wide,compare", help="which pages to draw (default: all three)")
    parser.add_argument("--compare-db", type=Path, help="store whose last two runs are compared (default: measure two)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--height", type=int, default=2400, help="pixels of each page kept, from the top")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="diffprof-shots-"))
    pages = {}
    wanted = set(args.pages.split(","))
    for name, db, bench_args in (("demo", args.demo_db, DEMO), ("wide", args.wide_db, WIDE)):
        if name not in wanted:
            continue
        if db is None:
            db = work / f"{name}.db"
            bench(bench_args, db)
        pages[name] = render(db, work / f"{name}.html")
    if "compare" in wanted:
        pages["compare"] = compare_page(args.compare_db, work)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    with Browser() as browser:
        for name, page in pages.items():
            for width in WIDTHS:
                check = browser.check(page, width)
                for problem in check.problems:
                    print(f"{name} at {width} px: {problem}")
                    failed = True
                shot = browser.screenshot(page, args.out / f"report-{name}-{width}.png", width, max_height=args.height)
                print(f"{shot}: {shrink(shot) / 1024:.0f} KiB; html {page.stat().st_size / 1024:.0f} KiB, "
                      f"{check.svgs} figures, {check.texts} text boxes", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
