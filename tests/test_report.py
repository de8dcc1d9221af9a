"""Reports: one body over every renderer, the shared tables, and format-specific checks (the plots
on their own: test_report_plots.py; the pages in a browser: test_report_browser.py)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from diffprof.errors import ConfigError, DiffprofError, InputError
from diffprof.report import RENDERERS, ReportOptions, get_renderer, load_run, run_frame
from diffprof.report.environment import environment_items
from diffprof.report.format import format_metric
from diffprof.report.html import CSP, suite_ids
from diffprof.report.tables import suite_table
from diffprof.results import CellResult, RunInfo

PROMPT = "a <b>bold</b> cat & a dog"
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB <GPU 0>\nTraceback (most recent call last):\n  ..."


# ---------------------------------------------------------------------------------------------
# A realistic fake run


def png_bytes(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small distinct image per cell (a gradient whose colour depends on ``seed``)."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    base = np.array([(37 * seed) % 256, (91 * seed) % 256, (151 * seed) % 256], dtype=np.float64)[None, None, :]
    pixels = ((x + y) / 2 + base) % 256
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def timeline_bytes(steps: int, step_s: float, gpu: bool = True) -> bytes:
    spans = [{"name": "text_encoding", "start_s": 0.0, "dur_s": 0.012, "step": None, "gpu_s": 0.010 if gpu else None}]
    t = 0.012
    for i in range(steps):
        spans.append({"name": "denoising_step", "start_s": t, "dur_s": step_s, "step": i, "gpu_s": 0.9 * step_s if gpu else None})
        t += step_s
    spans.append({"name": "vae_decode", "start_s": t, "dur_s": 0.021, "step": None, "gpu_s": 0.020 if gpu else None})
    return json.dumps(spans).encode()


def make_cell(
    suite: str,
    labels: dict,
    s_per_image: float,
    *,
    memory: float = 3.2e9,
    spread: tuple[float, ...] = (0.99, 1.0, 1.01),
    extra_metrics: dict | None = None,
    seed: int = 0,
    **settings_over,
) -> CellResult:
    settings = {"model": "sd15", "task": "txt2img", "scheduler": "euler", "steps": 20, "guidance": 7.5,
                "width": 512, "height": 512, "batch": 1, "precision": "fp16", "prompt": PROMPT}
    settings.update({k: v for k, v in labels.items() if k in settings})
    settings.update(settings_over)
    batch, steps = settings["batch"], settings["steps"]
    call = s_per_image * batch
    metrics = {
        "s_per_image": s_per_image,
        "steps_per_s": steps / call,
        "images_per_s": 1 / s_per_image,
        "text_encode_s": 0.012,
        "step_median_s": (call - 0.033) / steps,
        "vae_decode_s": 0.021 * batch,
        "peak_allocated_bytes": memory,
    }
    metrics.update(extra_metrics or {})
    return CellResult(
        suite=suite,
        labels=labels,
        settings=settings,
        metrics=metrics,
        samples={"call_s": [call * f for f in spread], "step_s": [(call - 0.033) / steps] * steps},
        artifacts={"image.png": png_bytes(seed), "timeline.json": timeline_bytes(steps, (call - 0.033) / steps)},
        started_at="2026-11-26T10:00:00",
        finished_at="2026-11-26T10:00:05",
    )


def build_run() -> RunInfo:
    cells: list[CellResult] = []
    seed = iter(range(1, 1000))
    cells += [make_cell("pipelines", {"model": m}, t, seed=next(seed)) for m, t in (("sd15", 1.2), ("sdxl", 3.1))]
    cells += [
        make_cell("schedulers", {"scheduler": s}, t, seed=next(seed), extra_metrics={"clip_score": c, "adherence": a})
        for s, t, c, a in (("euler", 1.20, 31.2, 0.81), ("ddim", 1.31, 30.9, 0.78), ("dpmpp_2m", 1.25, 31.5, 0.83))
    ]
    # time exactly proportional to pixels, memory to sqrt(pixels): the fits must find 1 and 0.5
    cells += [
        make_cell("resolutions", {"width": w, "height": w}, 4e-6 * w * w, memory=1e6 * w, seed=next(seed))
        for w in (256, 512, 768, 1024)
    ]
    cells += [
        make_cell("memory", {"optimization": o}, t, memory=m, seed=next(seed))
        for o, t, m in (
            ("none", 1.00, 5.2e9),
            ("attention_slicing", 1.35, 4.9e9),
            ("vae_slicing", 1.02, 4.6e9),
            ("vae_slicing+vae_tiling", 1.06, 4.4e9),
            ("model_cpu_offload", 2.10, 2.8e9),
        )
    ]
    cells.append(
        CellResult("memory", {"optimization": "sequential_cpu_offload"}, {"model": "sd15", "prompt": PROMPT}, status="failed", error=OOM)
    )
    # throughput saturates: 90% of the best (3.5) is 3.15, first reached at batch 8
    cells += [
        make_cell("batch", {"batch": b}, 1 / tp, seed=next(seed), batch=b)
        for b, tp in ((1, 1.0), (2, 1.8), (4, 3.0), (8, 3.4), (16, 3.5))
    ]
    cells += [make_cell("steps", {"steps": s}, 0.05 * s + 0.03, seed=next(seed), spread=(0.8, 1.0, 1.3)) for s in (10, 20, 30)]
    cells += [make_cell("guidance", {"guidance": g}, 1.2, seed=next(seed)) for g in (1.0, 7.5)]
    cells += [
        make_cell("precision", {"precision": p, "compile": c}, t, seed=next(seed))
        for p, c, t in (("fp32", False, 2.4), ("fp16", False, 1.2), ("fp16", True, 0.8))
    ]
    cells += [make_cell("tasks", {"task": t}, s, seed=next(seed)) for t, s in (("txt2img", 1.2), ("img2img", 0.9), ("inpaint", 1.0))]
    cells.append(make_cell("my_custom_sweep", {"knob": "a<b>|c"}, 0.7, seed=next(seed), extra_metrics={"psnr_db": 28.25}))
    environment = {
        "diffprof": "0.1.0",
        "python": "3.11.2",
        "torch": "2.13.0+cu130",
        "diffusers": "0.42.1",
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_520_809_984, "driver": "570.86.15"},
        "cpu": "AMD EPYC 9454 48-Core Processor",
        "hostname": "bench-01",
    }
    config = {"suites": ["all"], "prompt": PROMPT, "repeats": 3}
    return RunInfo(42, "2026-11-26T10:00:00", "2026-11-26T10:12:30", "finished", "diffprof bench --suite all", config, environment, cells)


@pytest.fixture
def run() -> RunInfo:
    return build_run()


@pytest.fixture(scope="module")
def html_report() -> str:
    """The html report of :func:`build_run`, drawn once for the tests that only read it."""
    return get_renderer("html").render(build_run())


def as_text(out: str | bytes) -> str:
    return out.decode("utf-8") if isinstance(out, bytes) else out


# ---------------------------------------------------------------------------------------------
# The contract


def test_registry_holds_every_format_and_unknown_names_teach():
    assert set(RENDERERS) >= {"console", "markdown", "csv", "json", "html"}
    with pytest.raises(ConfigError) as err:
        get_renderer("htm")
    assert "unknown report format 'htm'" in str(err.value)
    assert "did you mean 'html'" in err.value.hint and "markdown" in err.value.hint


def test_options_reject_nonsense():
    with pytest.raises(ConfigError):
        ReportOptions(width=10)
    with pytest.raises(ConfigError):
        ReportOptions(max_images=-1)


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_every_renderer_shows_every_suite_cell_and_failure(name, run, tmp_path):
    renderer = get_renderer(name)
    text = as_text(renderer.render(run, ReportOptions(width=200)))
    for suite in run.suites():
        assert suite in text, f"{name}: suite {suite} missing"
    for value in ("dpmpp_2m", "vae_slicing+vae_tiling", "sequential_cpu_offload", "1024", "img2img", "sdxl", "fp32"):
        assert value in text, f"{name}: label {value} missing"
    assert "CUDA out of memory" in text
    assert "failed" in text
    # quality metrics beside the timings: tables name them by header, csv and json by name
    assert ("CLIP score" in text and "PSNR (dB)" in text) or ("clip_score" in text and "psnr_db" in text)
    path = renderer.write(run, tmp_path, ReportOptions(plots=False))
    assert path.name == f"run-42.{renderer.file_extension}" and path.stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Shared table logic


def test_suite_table_columns_follow_the_data(run):
    by_suite = {s: [c for c in run.cells if c.suite == s] for s in run.suites()}
    sched = suite_table("schedulers", by_suite["schedulers"])
    assert [c.header for c in sched.columns] == [
        "status", "scheduler", "s/image", "n", "steps/s", "images/s", "text encode", "step", "VAE decode",
        "peak alloc", "adherence", "CLIP score",
    ]
    euler = sched.rows[0].text
    assert euler["s_per_image"] == "1.2 s [1.19–1.21]" and euler["n"] == "3"  # median of call_s; 3 repeats: their range
    assert sched.legend.startswith("s/image: median [25th–75th percentile] of the n timed repeats ([min–max] when n < 4)")
    assert euler["peak_allocated_bytes"] == "2.98 GiB"
    assert euler["clip_score"] == "31.2"
    assert sched.common["model"] == "sd15" and "scheduler" not in sched.common

    steps = suite_table("steps", by_suite["steps"])
    assert steps.columns[-1].key == "noise" and all(r.noisy for r in steps.rows)
    assert steps.rows[0].text["noise"] == "noisy (IQR 25.0%)"

    memory = suite_table("memory", by_suite["memory"])
    failed = [r for r in memory.rows if r.failed]
    assert len(failed) == 1 and failed[0].text["error"] == "CUDA out of memory. Tried to allocate 2.00 GiB <GPU 0>"
    assert failed[0].text["s_per_image"] == "-" and memory.failed == 1

    batch = suite_table("batch", by_suite["batch"])  # per image: call_s divided by the batch
    assert batch.rows[4].text["s_per_image"] == "286 ms [282.9–288.6]"

    # a label and a metric never share a header: the precision suite's compile label, compile_s' "compile time"
    precision = suite_table("precision", [make_cell("precision", {"precision": "fp16", "compile": True}, 0.8, extra_metrics={"compile_s": 51.0})])
    headers = [c.header for c in precision.columns]
    assert "compile" in headers and "compile time" in headers and len(set(headers)) == len(headers)


def test_metric_formatting():
    assert format_metric("s_per_image", 0.0123) == "12.3 ms"
    assert format_metric("peak_allocated_bytes", 3 * 2**30) == "3 GiB"
    assert format_metric("flops_per_image", 1.607e12) == "1.61 TFLOP"
    assert format_metric("mfu", 0.41) == "41.0%"
    assert format_metric("steps_per_s", 41.77) == "41.8"
    assert format_metric("psnr_db", 28.251) == "28.25"  # the header says dB
    assert format_metric("s_per_image", float("nan")) == "-" and format_metric("ssim", None) == "-"
    assert format_metric("first_call_s", 113.8) == "114 s" and format_metric("vae_encode_s", 0.0121) == "12.1 ms"


def test_environment_block_puts_versions_and_gpu_first(run):
    keys = [k for k, _ in environment_items(run)]
    assert keys[:4] == ["diffprof", "python", "torch", "diffusers"]
    items = dict(environment_items(run))
    assert items["gpu.name"] == "NVIDIA H100 80GB HBM3"
    assert items["gpu.memory_bytes"] == "79.6 GiB" and items["gpu.driver"] == "570.86.15"


# ---------------------------------------------------------------------------------------------
# Formats


def test_markdown_golden():
    cells = [
        CellResult("schedulers", {"scheduler": "euler"}, {"scheduler": "euler", "steps": 20},
                   metrics={"s_per_image": 1.5, "steps_per_s": 13.333}, samples={"call_s": [1.4, 1.5, 1.6]}),
        CellResult("schedulers", {"scheduler": "ddim"}, {"scheduler": "ddim", "steps": 20}, status="failed",
                   error="boom | <oops>\ntraceback line"),
    ]
    run = RunInfo(1, "2026-01-02T03:04:05", "2026-01-02T03:05:05", "finished", "diffprof bench --suite schedulers",
                  {}, {"torch": "2.13.0", "gpu": {"name": "H100"}}, cells)
    expected = """\
# diffprof run #1

## Summary

- **failed:** 1 of 2 cells failed: schedulers scheduler=ddim: boom \\| &lt;oops&gt;

<details><summary>Run and environment</summary>

- **run**: #1
- **status**: finished
- **started**: 2026-01-02T03:04:05
- **finished**: 2026-01-02T03:05:05
- **duration**: 60 s
- **command**: diffprof bench --suite schedulers
- **cells**: 2 cells in 1 suite, 1 failed
- **torch**: 2.13.0
- **gpu.name**: H100

</details>

## Failed cells (1)

- **schedulers** scheduler=ddim: boom \\| &lt;oops&gt;

## schedulers

Shared settings: steps=20

s/image: median [25th–75th percentile] of the n timed repeats ([min–max] when n &lt; 4); the median has as many figures as its spread supports.

| status | scheduler | s/image | n | steps/s | error |
|---|---|---:|---:|---:|---|
| ok | euler | 1.5 s [1.40–1.60] | 3 | 13.3 |  |
| failed | ddim | - |  | - | boom \\| &lt;oops&gt; |
"""
    assert get_renderer("markdown").render(run) == expected
    assert get_renderer("md").render(run) == expected  # `--format md` is markdown


def test_markdown_tables_are_well_formed(run):
    text = get_renderer("markdown").render(run)
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1, block  # every row of a table has as many cells as its header
    assert "a&lt;b&gt;\\|c" in text and "<b>" not in text


def test_console_colour_and_literal_brackets(run):
    run.cells.append(make_cell("schedulers", {"scheduler": "[red]x[/red]"}, 1.0))
    plain = get_renderer("console").render(run, ReportOptions(width=220))
    assert "\x1b[" not in plain and "[red]x[/red]" in plain
    assert "1.2 s [1.19–1.21]" in plain and "noisy (IQR 25.0%)" in plain
    assert plain.index("Summary") < plain.index("torch")  # the answer before the environment
    coloured = get_renderer("console").render(run, ReportOptions(width=220, color=True))
    failed_line = next(line for line in coloured.splitlines() if "sequential_cpu_offload" in line and "│" in line)
    assert "\x1b[31m" in failed_line  # the failed cell is red
    narrow = get_renderer("console").render(run, ReportOptions(width=80))
    assert "vae_slicing+vae_tiling" in narrow and "sequential_cpu_offload" in narrow  # axes stay whole


def test_csv_parses_back_row_per_cell(run):
    rows = list(csv.DictReader(io.StringIO(get_renderer("csv").render(run))))
    assert len(rows) == len(run.cells)
    for row, cell in zip(rows, run.cells):
        assert row["suite"] == cell.suite and row["status"] == cell.status
        for key, value in cell.labels.items():
            assert row[key] == str(value)
        for metric, value in cell.metrics.items():
            assert float(row[metric]) == value  # lossless: repr of the float
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == OOM and failed[0]["s_per_image"] == ""
    steps = [r for r in rows if r["suite"] == "steps"]
    assert all(r["noisy"] == "True" for r in steps)


def test_json_round_trips_losslessly(run):
    run.cells[0].metrics["achieved_tflops"] = float("nan")
    run.cells[0].samples["call_s"].append(float("inf"))
    text = get_renderer("json").render(run)

    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(text, parse_constant=reject)  # strict JSON, any parser reads it
    back = load_run(text)
    assert math.isnan(back.cells[0].metrics.pop("achieved_tflops"))
    run.cells[0].metrics.pop("achieved_tflops")
    assert back == run  # every field, artifacts' bytes included
    slim = load_run(get_renderer("json").render(run, ReportOptions(include_artifacts=False)))
    assert all(not c.artifacts for c in slim.cells) and [c.metrics for c in slim.cells] == [c.metrics for c in run.cells]


def test_json_loading_errors_teach(tmp_path):
    with pytest.raises(InputError, match="does not parse"):
        load_run("{nope")
    with pytest.raises(InputError, match="not a diffprof run"):
        load_run('{"cells": []}')
    with pytest.raises(InputError, match="missing or mangles"):
        load_run('{"format": "diffprof-run", "version": 1}')
    with pytest.raises(InputError, match="cannot read"):
        load_run(tmp_path / "absent.json")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


EXPECTED_PLOTS = {"scheduler_times", "resolution_scaling", "memory_tradeoff", "batch_throughput", "time_by_label", "step_timeline",
                  "image_grid", "cell_timeline"}


def test_html_is_self_contained_escaped_and_has_every_plot(html_report):
    text = html_report
    parser = _Tags()
    parser.feed(text)
    urls = [v for _, attrs in parser.tags for k, v in attrs.items() if k in ("src", "href") and v]
    assert urls and all(u.startswith("data:image/png;base64,") or u.startswith("#") for u in urls)  # '#': anchors, SVG <use>
    assert not re.search(r"https?://", text)  # not even an SVG namespace
    assert not any(tag in ("script", "link", "iframe", "object") for tag, _ in parser.tags)
    imgs = [a for t, a in parser.tags if t == "img"]
    for attrs in imgs:  # photographs stay PNG, and decode
        Image.open(io.BytesIO(base64.b64decode(attrs["src"].split(",", 1)[1]))).verify()
    figures = re.findall(r'<figure class="plot" data-plot="([^"]+)">(<svg|<img)', text)
    assert {kind for kind, _ in figures} == EXPECTED_PLOTS and len(figures) == text.count('<figure class="plot"')
    assert {kind for kind, body in figures if body == "<img"} == {"image_grid"}  # every chart is inline SVG
    assert [kind for kind, _ in figures].count("image_grid") == len(build_run().suites())  # every suite kept images
    # hover values: each point of a chart carries its numbers
    assert "<title>1. optimization=none: 4.84 GiB, 1 s per image</title>" in text
    assert "<title>batch 8: 3.4 images/s (batch=8: 294 ms [291.2–297.1] per image (n=3))</title>" in text
    assert "&lt;b&gt;bold&lt;/b&gt; cat &amp; a dog" in text and "<b>bold" not in text and "a&lt;b&gt;|c" in text
    assert "exponent 1.00" in text and "knee at batch 8" in text
    assert CSP in text and "NVIDIA H100 80GB HBM3" in text and "diffprof bench --suite all" in text
    assert "Failures <span class=\"count\">(1 of 32 cells)" in text and "Traceback (most recent call last)" in text


def test_html_answer_first_environment_folded_tables_scroll(html_report):
    text = html_report
    assert text.index('id="summary"') < text.index('id="environment"') < text.index('id="failures"') < text.index('class="suite"')
    summary = text[text.index('id="summary"'):text.index('id="environment"')]
    assert "fastest model=sd15 at 1.2 s per image" in summary and "batching stops paying at batch 8" in summary
    assert "Pareto picks, time against peak alloc: optimization=none (4.84 GiB, 1 s)" in summary
    assert 'class="failure"' in summary and 'class="warning"' in summary and "3 of 32 cells are noisy" in summary
    assert re.search(r'<section id="environment"><details><summary>Run and environment', text)  # folded: closed by default
    assert text.count('<div class="scroll"><table class="suite">') == text.count('<table class="suite">') == len(build_run().suites())
    # a failed cell's reason: a full-width row of its own, not a column squeezed beside the numbers
    row = re.search(r'<tr class="failed">(.*?)</tr><tr class="reason"><td colspan="(\d+)">CUDA out of memory', text)
    assert row and int(row.group(2)) == row.group(1).count("<td")
    assert "<th>error</th>" not in text.split('id="suite-memory"')[1].split("</table>")[0]


def test_suite_ids_are_distinct_and_safe():
    assert suite_ids(["a b", "a-b", "<x>", ""]) == {"a b": "suite-a-b", "a-b": "suite-a-b-2", "<x>": "suite-x", "": "suite-unnamed"}


def test_html_options_leave_out_plots_or_artifacts(run):
    tables_only = get_renderer("html").render(run, ReportOptions(plots=False))
    assert "<img" not in tables_only and "<svg" not in tables_only and "<table" in tables_only
    no_artifacts = get_renderer("html").render(run, ReportOptions(include_artifacts=False))
    for kind in ("image_grid", "step_timeline", "cell_timeline"):
        assert f'data-plot="{kind}"' not in no_artifacts
    assert 'data-plot="batch_throughput"' in no_artifacts


def test_markdown_keeps_the_quality_note_and_whole_settings():
    prompt = "a large red circle in the center on a blue background, drawn with a thick black outline, photographed at noon"
    about = {"metrics": ["convergence"], "prompts": 4, "prompt_set": "shapes scenes", "seeds": [10000, 10003], "reference": "dpmpp_2m at 100 steps"}
    cells = [make_cell("guidance", {"guidance": g}, 1.2, prompt=prompt, quality=about, extra_metrics={"psnr_db": q}) for g, q in ((1.0, 28.0), (7.5, 31.0))]
    run = RunInfo(5, "2026-11-26T10:00:00", None, "finished", "bench", {}, {}, cells)
    text = get_renderer("md").render(run)
    assert "PSNR, SSIM and latent error against dpmpp_2m at 100 steps on 4 shapes scenes (seeds 10000-10003)" in text
    assert f"prompt={prompt}" in text and "…" not in text and 'quality={"metrics"' not in text


def test_empty_run_renders_everywhere():
    empty = RunInfo(3, "2026-11-26T10:00:00", None, "running", "", {}, {}, [])
    for name in RENDERERS:
        assert as_text(get_renderer(name).render(empty))


def test_run_frame(run):
    frame = run_frame(run)
    assert len(frame) == len(run.cells)
    assert {"suite", "scheduler", "width", "optimization", "status", "s_per_image", "clip_score", "error"} <= set(frame.columns)
    res = frame[frame.suite == "resolutions"]
    assert list(res.width) == [256, 512, 768, 1024]
    assert res.s_per_image.tolist() == [c.metrics["s_per_image"] for c in run.cells if c.suite == "resolutions"]
    assert frame.s_per_image.dtype.kind == "f" and frame.s_per_image.isna().sum() == 1


def test_run_frame_without_pandas_says_how_to_get_it(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(DiffprofError) as err:
        run_frame(run)
    assert "pandas" in str(err.value) and "pip install" in err.value.hint


@pytest.mark.parametrize("name", ["console", "markdown", "html"])
def test_a_cell_that_ran_without_its_cuda_graph_says_why_in_every_table(name):
    """A fast loop that fell back from its CUDA graph is timed as an eager loop: each format names
    the cell and the reason under its table, and the shared-settings line does not repeat it."""
    why = "CUDA graph capture failed (RuntimeError: Cannot copy between CPU and CUDA tensors); ran the loop eagerly"
    cells = [
        make_cell("schedulers", {"scheduler": "euler"}, 0.35, fast_path="cuda_graph"),
        make_cell("schedulers", {"scheduler": "unipc"}, 0.41, fast_path="eager_loop", fast_path_note=why),
    ]
    run = RunInfo(7, "2026-11-26T10:00:00", "2026-11-26T10:01:00", "finished", "diffprof bench -s schedulers", {}, {}, cells)
    assert suite_table("schedulers", cells).notes == [f"scheduler=unipc: {why}"]
    out = as_text(get_renderer(name).render(run, ReportOptions(plots=False, width=400)))
    flat = " ".join(out.split())
    assert f"scheduler=unipc: {why}" in flat.replace("&#x27;", "'") and "scheduler=euler: " not in flat
    assert flat.count("Cannot copy between CPU and CUDA") == 1


def test_a_cell_timed_after_a_kernel_capture_says_so_under_its_table():
    """Times taken after a detailed capture in the same process are dearer per launch: the table
    names the cell and why, beside any fast-path note, and the caption does not repeat it."""
    from diffprof.engine.engine import timing_note

    why = "CUDA graph capture failed; ran the loop eagerly"
    cells = [
        make_cell("schedulers", {"scheduler": "euler"}, 0.35, timing_note="CUPTI attached"),
        make_cell("schedulers", {"scheduler": "unipc"}, 0.41, fast_path_note=why, timing_note="CUPTI attached"),
    ]
    table = suite_table("schedulers", cells)
    assert table.notes == ["scheduler=euler: CUPTI attached", f"scheduler=unipc: {why}", "scheduler=unipc: CUPTI attached"]
    run = RunInfo(7, "2026-11-26T10:00:00", "2026-11-26T10:01:00", "finished", "diffprof bench -s schedulers", {}, {}, cells)
    flat = " ".join(as_text(get_renderer("markdown").render(run, ReportOptions(plots=False, width=400))).split())
    assert flat.count("CUPTI attached") == 2
    import torch

    assert timing_note(torch.device("cpu")) is None
