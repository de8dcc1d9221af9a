"""Every report page in a real browser: one headless Chromium for all pages and widths.

At 1400 and 900 px each page must fit the window (tables scroll inside their own box), no two
``<text>`` boxes of a figure may overlap as the browser lays them out (every ``<details>`` opened),
and nothing may reach the console or the network. A page built to fail every check proves the
checks can fail.
"""

from __future__ import annotations

import pytest
from test_report import OOM, PROMPT, build_run, make_cell

from diffprof.report import ReportOptions, get_renderer
from diffprof.report.browser import Browser
from diffprof.results import CellResult, RunInfo

WIDTHS = (1400, 900)


def wide_run() -> RunInfo:
    """About 50 cells: a scheduler x steps quality sweep, long option names, failures, noise,
    and steps that came out faster with more work (the implausible case a busy host produces)."""
    about = {"metrics": ["convergence"], "prompts": 4, "prompt_set": "shapes scenes", "seeds": [10000, 10003], "reference": "dpmpp_2m at 100 steps"}
    cells: list[CellResult] = []
    seed = iter(range(1, 1000))
    for s, base in (("ddim", 0.05), ("pndm", 0.045), ("euler", 0.048), ("euler_a", 0.047), ("dpmpp_2m", 0.046), ("unipc", 0.046)):
        for steps in (5, 10, 20, 30):
            c = make_cell("quality", {"scheduler": s, "steps": steps}, base * steps + 0.03, quality=about, seed=next(seed),
                          extra_metrics={"psnr_db": 18 + steps * 0.4 + base * 10, "ssim": 0.5 + steps / 80})
            c.samples["psnr_db"] = [c.metrics["psnr_db"] + d for d in (-1.5, -0.4, 0.5, 1.4)]
            cells.append(c)
    options = ["none", "attention_slicing", "vae_slicing", "vae_slicing+vae_tiling+attention_slicing", "model_cpu_offload",
               "model_cpu_offload+vae_slicing+vae_tiling", "sequential_cpu_offload"]
    for i, o in enumerate(options):
        cells.append(make_cell("memory", {"optimization": o}, 0.5 + 0.1 * i, memory=5e9 - 4e8 * i, seed=next(seed)))
    cells.append(CellResult("memory", {"optimization": "group_offload"}, {"model": "sd15", "prompt": PROMPT}, status="failed", error=OOM))
    for steps, t in ((10, 0.42), (20, 0.66), (30, 1.33), (50, 0.31)):
        cells.append(make_cell("steps", {"steps": steps}, t, seed=next(seed), spread=(0.97, 1.0, 1.02, 1.03)))
    for b, t in ((1, 1.15), (2, 0.67), (4, 0.9), (8, 0.95)):
        cells.append(make_cell("batch", {"batch": b}, t, seed=next(seed), batch=b, spread=(0.98, 1.0, 1.01, 1.02)))
    for g in (1.0, 3.0, 5.0, 7.5, 10.0):
        c = make_cell("guidance", {"guidance": g}, 1.2, quality=about, seed=next(seed), extra_metrics={"psnr_db": 28.0 + g / 500})
        c.samples["psnr_db"] = [c.metrics["psnr_db"] + d for d in (-3.0, -1.0, 1.0, 3.0)]
        cells.append(c)
    cells.append(CellResult("steps", {"steps": 100}, {"model": "sd15"}, status="failed", error="RuntimeError: " + "worker lost " * 30))
    environment = {"torch": "2.13.0+cpu", "cpu": "AMD EPYC", "host_state": {"busy": True, "reason": "load 3.1 on 2 cores"}}
    return RunInfo(52, "2026-11-26T10:00:00", "2026-11-26T11:00:00", "finished", "diffprof bench -s quality,memory,steps,batch,guidance",
                   {"suites": ["quality"]}, environment, cells)


BROKEN = """<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
</head><body><div style="width:2000px">wide</div><svg width="200" height="40"><text x="10" y="20">overlapping</text>
<text x="14" y="22">labels</text></svg><img src="http://example.invalid/x.png" alt="remote"><script>console.log(1)</script></body></html>"""


def comparison_runs() -> list[RunInfo]:
    """Eight runs of a 6-cell sweep in 3 rounds: five alike, then pndm 20% slower, ddim failing and
    a new cell, so a comparison holds a regression, sames, a failure and unmatched cells, and a
    history holds a change point."""
    import numpy as np

    rng = np.random.default_rng(7)
    runs = []
    for rid in range(1, 9):
        cells = []
        for name, base in (("ddim", 0.060), ("pndm", 0.066), ("euler", 0.061), ("euler_a", 0.062), ("dpmpp_2m", 0.063), ("unipc", 0.064)):
            factor = 1.2 if name == "pndm" and rid > 5 else 1.0
            if name == "ddim" and rid == 8:
                cells.append(CellResult("schedulers", {"scheduler": name}, {"scheduler": name}, status="failed", error=OOM))
                continue
            rounds = (base * factor * rng.lognormal(0, 0.004, size=3)).tolist()
            probes = (0.004 * rng.lognormal(0, 0.002, size=3)).tolist()
            cells.append(CellResult("schedulers", {"scheduler": name}, {"scheduler": name, "steps": 8},
                                    metrics={"s_per_image": float(np.median(rounds)), "probe_s": float(np.median(probes))},
                                    samples={"call_s": rounds}, rounds={"s_per_image": rounds, "probe_s": probes}))
        if rid == 8:
            cells.append(CellResult("schedulers", {"scheduler": "heun"}, {"scheduler": "heun"}, metrics={"s_per_image": 0.12}, samples={"call_s": [0.12]}))
        runs.append(RunInfo(rid, f"2026-12-01T10:0{rid}:00+00:00", None, "finished", "diffprof bench -s schedulers", {},
                            {"torch": {"version": "2.13.0"}, "git": {"commit": f"c{rid}"}}, cells, name="baseline" if rid == 5 else None))
    return runs


def test_the_comparison_and_history_pages_fit_and_nothing_overlaps(chromium, tmp_path):
    from diffprof.analysis.compare import compare
    from diffprof.analysis.history import history
    from diffprof.report.comparison import get_comparison_renderer
    from diffprof.report.history import render_history

    runs = comparison_runs()
    result = compare(runs[4], runs[7], history=runs[:4])
    assert {c.verdict for c in result.cells} >= {"regression", "failed"} and result.only_b
    pages = {"compare": tmp_path / "compare.html", "history": tmp_path / "history.html"}
    pages["compare"].write_text(get_comparison_renderer("html").render(result), encoding="utf-8")
    pages["history"].write_text(render_history(history(runs, suite="schedulers"), "html"), encoding="utf-8")
    problems = []
    with Browser(chromium) as browser:
        for name, path in pages.items():
            for width in WIDTHS:
                check = browser.check(path, width)
                problems += [f"{name} at {width} px: {p}" for p in check.problems]
                assert check.svgs >= 1, name
    assert not problems, "\n".join(problems)


def test_a_broken_page_fails_every_check(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    with Browser(chromium) as browser:
        check = browser.check(page, 900)
    assert check.scroll_width > check.viewport_width
    assert check.overlaps == ["svg 0: 'overlapping' overlaps 'labels'"]
    assert any("example.invalid" in r for r in check.requests)
    assert check.console and check.broken_images == ["remote"]


@pytest.mark.slow
def test_reports_fit_and_nothing_overlaps_in_chromium(chromium, tmp_path):
    """The run report of the renderer tests, a ~50-cell run and a run with no cells, at 1400 and 900 px."""
    wide = wide_run()
    assert 45 <= len(wide.cells) <= 55
    pages = {}
    for name, run in (("run", build_run()), ("wide", wide), ("empty", RunInfo(3, "2026-11-26T10:00:00", None, "running", "", {}, {}, []))):
        pages[name] = tmp_path / f"{name}.html"
        pages[name].write_text(get_renderer("html").render(run), encoding="utf-8")
    problems, seen = [], {}
    with Browser(chromium) as browser:
        for name, path in pages.items():
            for width in WIDTHS:
                check = browser.check(path, width)
                problems += [f"{name} at {width} px: {p}" for p in check.problems]
                seen[(name, width)] = check
    assert not problems, "\n".join(problems)
    # the checks had something to measure: every figure's text (folded timelines opened)
    assert seen[("wide", 900)].texts > 500 and seen[("run", 1400)].svgs >= 30


def test_the_wide_run_says_what_is_wrong_first():
    text = get_renderer("html").render(wide_run(), ReportOptions(plots=False))
    summary = text[text.index('id="summary"'):text.index('id="environment"')]
    assert "the host was busy while this run measured (load 3.1 on 2 cores)" in summary
    assert "50 steps took 310 ms per image, less than 20 steps (660 ms)" in summary
    assert "batch 4 gave 1.11 images/s, less than batch 2 (1.49)" in summary
    assert "no Pareto front of time against PSNR (dB)" in summary  # guidance: 0.02 dB apart
    assert "2 of" in summary and "cells failed" in summary
