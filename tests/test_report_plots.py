"""Each plot on its own: what it concludes, and that it never concludes more than the data carries
(no exponent or front within noise, host RSS never ranked), with axes fitted to the data, plain
tick labels, hover values, and labels that do not overlap."""

from __future__ import annotations

import json
import re

import pytest
from test_report import build_run, make_cell, timeline_bytes

from diffprof.analysis.pareto import pareto_front
from diffprof.report.artifacts import parse_timeline
from diffprof.report.figure import fit_axis, new_figure, place_labels
from diffprof.report.image_plots import image_grid, step_timeline, timeline_title
from diffprof.report.plots import (
    RSS_NOTE, batch_throughput, cell_timelines, memory_tradeoff, quality_tradeoff, resolution_scaling, scheduler_times, suite_plots, time_by_label,
)
from diffprof.results import CellResult, RunInfo


@pytest.fixture(scope="module")
def run() -> RunInfo:
    return build_run()


def suite_cells(run: RunInfo, suite: str) -> list[CellResult]:
    return [c for c in run.cells if c.suite == suite]


def texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_resolution_plot_fits_exponents_beyond_noise(run):
    drawn = resolution_scaling(suite_cells(run, "resolutions"))
    assert drawn.description == "time per image exponent 1.00; peak alloc exponent 0.50"
    assert resolution_scaling(suite_cells(run, "resolutions")[:1]) is None  # one size: nothing to fit
    # ticks are plain numbers and sizes, never "5.28×10⁻¹" or mathtext
    assert all(not re.search(r"×10|10\^|\$|e[+-]\d", t) for t in texts(drawn.svg)), texts(drawn.svg)
    assert "<title>512×512: 1.049 s</title>" in drawn.svg


def test_resolution_plot_fits_no_exponent_to_process_rss():
    """The issue's case: RSS of one process, 2% apart across sizes: no exponent, and why."""
    cells = [make_cell("resolutions", {"width": w, "height": w}, 4e-6 * w * w, memory=0) for w in (256, 512, 768)]
    for c, rss in zip(cells, (551e6, 555e6, 562e6)):
        del c.metrics["peak_allocated_bytes"]
        c.metrics["host_peak_rss_bytes"] = rss
    drawn = resolution_scaling(cells)
    assert drawn.description == ("time per image exponent 1.00; "
                                 "host peak RSS varies by 2%: host RSS (the process's peak so far), not fitted")
    assert drawn.note == RSS_NOTE
    same = [make_cell("resolutions", {"width": w, "height": w}, 1.0 + 0.001 * i) for i, w in enumerate((256, 512, 768))]
    assert resolution_scaling(same).description.startswith("time per image varies by 0% (within noise): no exponent fitted")


def test_batch_plot_marks_the_knee(run):
    drawn = batch_throughput(suite_cells(run, "batch"))
    assert drawn.description.startswith("knee at batch 8: 3.4 images/s, 97% of the best 3.5")
    assert batch_throughput(suite_cells(run, "batch")[:1]) is None


def test_memory_plot_numbers_the_points_and_fills_the_front(run):
    cells = suite_cells(run, "memory")
    # time against memory, both lower-is-better: the fastest first
    assert pareto_front([1.0, 1.35, 1.02, 2.1], [5.2, 4.9, 4.6, 2.8], "lower") == [0, 2, 3]
    drawn = memory_tradeoff(cells)
    assert drawn.description == (
        "Pareto-optimal: optimization=none; optimization=vae_slicing; "
        "optimization=vae_slicing+vae_tiling; optimization=model_cpu_offload"
    )
    assert [row[:2] for row in drawn.legend][:2] == [("1", "optimization=none"), ("2", "optimization=attention_slicing")]
    assert {"1", "2", "3", "4", "5"} <= set(texts(drawn.svg))  # numbered markers, the names in the legend table
    no_memory = [CellResult(c.suite, c.labels, c.settings, metrics={"s_per_image": 1.0}) for c in cells]
    assert memory_tradeoff(no_memory) is None


def test_memory_plot_ranks_nothing_on_host_rss_or_within_noise(run):
    rss = [make_cell("memory", {"optimization": o}, t) for o, t in (("none", 0.53), ("attention_slicing", 0.38), ("vae_slicing", 0.37))]
    for c, m in zip(rss, (571e6, 588e6, 595e6)):  # grows in run order, as a process's peak does
        del c.metrics["peak_allocated_bytes"]
        c.metrics["host_peak_rss_bytes"] = m
    drawn = memory_tradeoff(rss)
    assert drawn.note == RSS_NOTE and "Pareto" not in drawn.description
    assert drawn.description.startswith("Time per image by memory option (memory not ranked: host RSS): fastest optimization=vae_slicing")
    flat = [make_cell("memory", {"optimization": o}, 1.0 + 0.001 * i, memory=4e9 + 1e6 * i) for i, o in enumerate(("none", "vae_slicing"))]
    assert memory_tradeoff(flat).description == "No Pareto front: the times and memory of these options differ within noise."


def test_quality_plot_draws_no_front_within_noise():
    """The guidance suite of the issue: PSNR 0.02 dB apart, per-prompt scores spread by dB: no front."""
    about = {"metrics": ["convergence"], "prompts": 4}
    cells = [make_cell("guidance", {"guidance": g}, t, quality=about, extra_metrics={"psnr_db": q}) for g, t, q in ((3.0, 1.0, 28.01), (7.5, 1.3, 28.03))]
    for c, s in zip(cells, ([25.0, 31.0, 28.0, 28.04], [25.1, 31.0, 27.9, 28.12])):
        c.samples["psnr_db"] = s
    drawn = quality_tradeoff(cells)
    assert drawn.description == "No Pareto front: the PSNR (dB) differences (PSNR (dB) spans 28.01 to 28.03) are within noise."
    assert "Pareto front" not in " ".join(texts(drawn.svg)) and "psnr_db" not in drawn.svg  # titled by the header
    apart = [make_cell("guidance", {"guidance": g}, t, quality=about, extra_metrics={"psnr_db": q}) for g, t, q in ((3.0, 1.0, 24.0), (7.5, 1.3, 31.0))]
    for c, s in zip(apart, ([23.9, 24.0, 24.1, 24.0], [30.9, 31.0, 31.1, 31.0])):
        c.samples["psnr_db"] = s
    assert quality_tradeoff(apart).description.startswith("Pareto front of time vs PSNR (dB): guidance=3 (1 s, 24)")


def test_time_by_label_line_for_numbers_bars_for_names(run):
    steps = time_by_label(suite_cells(run, "steps")).description
    assert steps.startswith("Time per image by steps: fastest steps=10 at 530 ms per image")
    precision = time_by_label(suite_cells(run, "precision")).description
    assert precision.startswith("Time per image by precision / compile: fastest precision=fp16, compile=True at 800 ms")
    assert scheduler_times(suite_cells(run, "schedulers")).description.startswith("Time per image by scheduler: fastest scheduler=euler")
    assert time_by_label([c for c in run.cells if not c.ok]) is None
    close = [make_cell("x", {"k": k}, t) for k, t in (("a", 1.0), ("b", 1.001))]
    assert "fastest k=a at 1 s per image, within noise of k=b" in time_by_label(close).description


def test_long_bar_names_become_numbers_with_a_legend():
    names = [f"attention_slicing+vae_tiling+variant_{i}" for i in range(8)]
    drawn = time_by_label([make_cell("memory", {"optimization": n}, 1.0 + 0.1 * i) for i, n in enumerate(names)])
    assert [row[1] for row in drawn.legend] == [f"optimization={n}" for n in names]
    assert not any(n in texts(drawn.svg) for n in names) and "8" in texts(drawn.svg)


@pytest.mark.filterwarnings("error")
def test_user_labels_are_plain_text_in_figures():
    """``$`` would start matplotlib mathtext (and fail on ``$x^``); a glyph the font lacks must not warn."""
    cells = [make_cell("x", {"name": "$5 $x^"}, 1.0), make_cell("x", {"name": "cost $ 猫"}, 2.0)]
    assert "fastest name=$5 $x^" in time_by_label(cells).description
    assert image_grid(cells).description == "2 images: name=$5 $x^; name=cost $ 猫"


def test_axes_fit_the_data():
    fig, (ax,) = new_figure(4, 3)
    assert fit_axis(ax, "y", [528e6 / 2**30, 540e6 / 2**30]) is False  # 2% apart: linear, not from 0
    low, high = ax.get_ylim()
    assert 0.48 < low < 528e6 / 2**30 and 540e6 / 2**30 < high < 0.52
    assert fit_axis(ax, "x", [1024, 4096, 16384]) is True and ax.get_xscale() == "log"
    fig, (ax,) = new_figure(4, 3)
    fit_axis(ax, "y", [0.8, 1.2], zero=True)  # bars: their length is the value
    assert ax.get_ylim()[0] == 0


def test_placed_labels_never_overlap():
    fig, (ax,) = new_figure(4, 3)
    points = [(1.0, 1.0)] * 6 + [(1.01, 1.0), (5.0, 5.0)]  # a pile of points at one spot
    ax.scatter(*zip(*points))
    fit_axis(ax, "x", [p[0] for p in points])
    fit_axis(ax, "y", [p[1] for p in points])
    placed = place_labels(fig, ax, points, [str(i + 1) for i in range(len(points))])
    assert placed[-1] and not all(placed)  # the lone point is labelled; not all of the pile fits
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == sum(placed)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_step_timeline_from_artifact(run):
    spans = parse_timeline(run.cells[0].artifacts["timeline.json"])
    assert [s.name for s in spans[:2]] == ["text_encoding", "denoising_step"] and spans[-1].name == "vae_decode"
    assert spans[1].step == 0 and spans[1].gpu_s == pytest.approx(0.9 * spans[1].dur_s)
    drawn = step_timeline(spans, "sd15")
    assert drawn.description.startswith("sd15: 1.2 s; text_encoding 1%, denoising_step 97%, vae_decode 2%")
    assert drawn.svg.count("<rect") == 2 * len(spans) and drawn.svg.count("<title>") == len(spans)  # hover: every span
    assert "<title>denoising_step 0: 58.4 ms, GPU 52.5 ms, from 12 ms</title>" in drawn.svg
    assert step_timeline(None) is None and step_timeline([]) is None
    for garbage in (b"not json", b"{}", b'[{"name": 3}]', b'[{"name": "x", "start_s": "a", "dur_s": 1}]'):
        assert parse_timeline(garbage) is None
    partial = parse_timeline(b'[{"name": "x", "start_s": 0, "dur_s": 1, "step": true}, 5]')
    assert len(partial) == 1 and partial[0].step is None


def test_timeline_title_counts_the_steps_asked_for():
    """PNDM runs one loop iteration more than its steps: the title says 10 steps, and the 11 iterations."""
    pndm = make_cell("steps", {"steps": 10}, 0.5)
    pndm.artifacts["timeline.json"] = timeline_bytes(11, 0.04)
    spans = parse_timeline(pndm.artifacts["timeline.json"])
    assert timeline_title(pndm, spans) == "One call of steps=10: 10 steps (11 loop iterations)"
    euler = make_cell("steps", {"steps": 10}, 0.5)
    euler.artifacts["timeline.json"] = timeline_bytes(10, 0.04)
    assert timeline_title(euler, parse_timeline(euler.artifacts["timeline.json"])) == "One call of steps=10: 10 steps"


def test_every_cell_gets_its_timeline(run):
    cells = suite_cells(run, "memory")
    timelines = cell_timelines(cells)
    assert [t.cell for t in timelines] == [c.label for c in cells if c.ok]  # the failed cell kept none
    broken = json.loads(cells[1].artifacts["timeline.json"])
    cells[1].artifacts["timeline.json"] = b"garbage"
    assert len(cell_timelines(cells)) == len(timelines) - 1
    cells[1].artifacts["timeline.json"] = json.dumps(broken).encode()


def test_image_grid_labels_every_image_and_skips_broken_ones():
    cells = suite_cells(build_run(), "memory")
    cells[0].artifacts["image.png"] = b"\x89PNG\r\n\x1a\nbroken"
    description = image_grid(cells).description
    assert description == "4 images: optimization=attention_slicing; optimization=vae_slicing; optimization=vae_slicing+vae_tiling; optimization=model_cpu_offload"
    assert image_grid(cells, max_images=2).description.startswith("2 images")
    assert image_grid([c for c in cells if not c.ok]) is None


def test_suite_plots_choose_by_suite(run):
    kinds = {s: [p.kind for p in suite_plots(s, suite_cells(run, s), max_images=1)] for s in ("resolutions", "batch", "memory", "schedulers", "my_custom_sweep")}
    assert kinds["resolutions"] == ["resolution_scaling", "step_timeline", "image_grid"]
    assert kinds["batch"][0] == "batch_throughput" and kinds["memory"][0] == "memory_tradeoff"
    assert kinds["schedulers"][0] == "scheduler_times" and kinds["my_custom_sweep"][0] == "time_by_label"
    assert [p.kind for p in suite_plots("steps", suite_cells(run, "steps"), artifacts=False)] == ["time_by_label"]
