"""The metric registry: every entry complete, headers unique, one formatter everywhere, unknown
names handled, and a new metric as one entry (the worked example of docs/architecture.md)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import diffprof.metrics
from diffprof.analysis.compare import compare
from diffprof.analysis.pareto import quality_metric_of
from diffprof.errors import ConfigError
from diffprof.metrics import (
    METRICS,
    Metric,
    auto_quality_suites,
    direction_of,
    key_metrics,
    memory_metrics,
    metric,
    ordered,
    quality_metrics,
    require,
)
from diffprof.report import ReportOptions, get_renderer
from diffprof.report.console_tables import cells_table
from diffprof.report.format import format_metric, metric_header
from diffprof.report.tables import metric_texts, suite_table
from diffprof.results import CellResult, RunInfo

#: A plausible value of every registered metric, for formatting checks.
VALUES = {
    "s_per_image": 1.234, "steps_per_s": 41.77, "images_per_s": 0.81, "s_per_call": 2.468, "text_encode_s": 0.0121, "probe_s": 0.0187,
    "step_median_s": 0.0251, "vae_decode_s": 0.0219, "peak_allocated_bytes": 5.3e9, "peak_reserved_bytes": 6.1e9,
    "nvml_used_bytes": 7.0e9, "host_peak_rss_bytes": 2.2e9, "load_s": 3.5, "compile_s": 51.0, "flops_per_image": 1.607e12,
    "achieved_tflops": 64.2, "mfu": 0.348, "energy_j_per_image": 412.0, "images_per_kj": 2.43, "first_call_s": 113.8,
    "unet_evals": 20.0, "vae_encode_s": 0.0112, "adherence": 0.8125, "clip_score": 31.25, "psnr_db": 28.251,
    "ssim": 0.9123, "latent_rel_error": 0.0213, "fidelity_psnr_db": 41.37, "fidelity_latent_error": 0.0134, "probe_s": 0.0412,
}  # fmt: skip


def _text(renderable: object, width: int = 400) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# The entries


@pytest.mark.parametrize("m", list(METRICS), ids=lambda m: m.name)
def test_every_entry_is_complete(m: Metric) -> None:
    assert m.registered and m.direction in ("lower", "higher")
    assert isinstance(m.unit, str) and m.header and m.help
    assert "_" not in m.header  # a human header, not the raw name
    if m.format == "seconds":
        assert m.unit == "s"
    if m.format == "bytes":
        assert m.unit == "B"
    if m.sample is not None:
        assert m.sample.endswith("_s") or m.quality is not None  # a time series, or a score per image
    if m.quality is None:
        assert not m.auto_suites  # only quality metrics are scored automatically
    assert m.name in VALUES, "add a plausible value for the new metric to VALUES"
    text = format_metric(m.name, VALUES[m.name])
    assert text and text != "-" and "nan" not in text


def test_headers_are_unique_and_registration_refuses_bad_entries() -> None:
    headers = [m.header for m in METRICS]
    assert len(headers) == len(set(headers)) == len(METRICS)
    registry = METRICS.copy()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Metric("s_per_image", "s", "lower", "time"))
    with pytest.raises(ValueError, match="already 's_per_image'"):
        registry.register(Metric("s_per_picture", "s", "lower", "s/image"))
    with pytest.raises(ValueError, match="needs direction"):
        registry.register(Metric("odd", "", None, "odd"))
    with pytest.raises(ValueError, match="no quality family"):
        registry.register(Metric("odd", "", "higher", "odd", auto_suites=frozenset({"quality"})))
    assert len(registry) == len(METRICS)  # the refused entries left no trace


def test_what_the_registry_replaced() -> None:
    """The lists that used to live in five modules, now read from the entries."""
    assert key_metrics() == (
        "s_per_image", "images_per_s", "step_median_s", "vae_decode_s", "peak_allocated_bytes", "mfu",
        "adherence", "clip_score", "psnr_db", "ssim",
    )  # fmt: skip
    assert quality_metrics() == ("adherence", "clip_score", "psnr_db", "ssim", "latent_rel_error", "fidelity_latent_error", "fidelity_psnr_db")
    assert memory_metrics() == ("peak_allocated_bytes", "peak_reserved_bytes", "nvml_used_bytes", "host_peak_rss_bytes")
    assert {m: metric(m).sample for m in ("s_per_image", "s_per_call", "images_per_s", "step_median_s", "steps_per_s")} == {
        "s_per_image": "call_s", "s_per_call": "call_s", "images_per_s": "call_s", "step_median_s": "step_s", "steps_per_s": "step_s",
    }  # fmt: skip
    assert metric("images_per_s").direction == "higher" and metric("latent_rel_error").direction == "lower"


def test_automatic_quality_suites_match_measure() -> None:
    """The registry holds what suites.measure decides today, so measure can read it instead."""
    from diffprof.quality.scoring import AUTO_ADHERENCE_SUITES, AUTO_QUALITY_SUITES

    assert auto_quality_suites("adherence") == AUTO_ADHERENCE_SUITES
    assert auto_quality_suites("convergence") == AUTO_QUALITY_SUITES
    assert auto_quality_suites("clip") == frozenset()


def test_formatting_by_kind() -> None:
    assert format_metric("s_per_image", 0.0123) == "12.3 ms" and format_metric("first_call_s", 113.8) == "114 s"
    assert format_metric("peak_allocated_bytes", 3 * 2**30) == "3 GiB"
    assert format_metric("flops_per_image", 1.607e12) == "1.61 TFLOP"
    assert format_metric("mfu", 0.41) == "41.0%"
    assert format_metric("steps_per_s", 41.77) == "41.8" and format_metric("images_per_s", 2.5) == "2.5"
    assert format_metric("psnr_db", 28.251) == "28.25" and metric_header("psnr_db") == "PSNR (dB)"
    assert format_metric("unet_evals", 20.0) == "20"
    assert format_metric("s_per_image", float("nan")) == "-" and format_metric("ssim", None) == "-"
    assert format_metric("psnr_db", float("inf")) == "inf"


# ---------------------------------------------------------------------------------------------
# Names the registry lacks (stores from other versions)


def test_unknown_names_are_described_from_their_suffix() -> None:
    assert metric("unet_s").format == "seconds" and direction_of("unet_s") == "lower"
    assert format_metric("unet_s", 0.5) == "500 ms" and metric_header("unet_s") == "unet_s"
    assert format_metric("workspace_bytes", 2**20) == "1 MiB" and direction_of("workspace_bytes") == "lower"
    assert format_metric("tokens_per_s", 41.77) == "41.77" and direction_of("tokens_per_s") == "higher"  # a rate, not a time
    assert format_metric("aesthetic", 0.123456) == "0.1235" and metric("aesthetic").direction is None
    assert not metric("aesthetic").registered
    assert ordered(["zeta", "mfu", "alpha", "s_per_image"]) == ["s_per_image", "mfu", "alpha", "zeta"]


def test_an_old_store_with_unknown_metrics_still_renders() -> None:
    cell = CellResult("schedulers", {"scheduler": "euler"}, {}, metrics={"s_per_image": 1.0, "aesthetic": 5.5, "unet_s": 0.4},
                      samples={"call_s": [1.0, 1.01, 0.99]})
    run = RunInfo(1, "2026-01-01T00:00:00", None, "finished", "bench", {}, {}, [cell])
    for name in ("console", "markdown", "csv", "json", "html"):
        out = get_renderer(name).render(run, ReportOptions(plots=False))
        assert "aesthetic" in out and "5.5" in out and ("400 ms" in out or "0.4" in out)
    assert "400 ms" in _text(cells_table(run))


def test_a_user_naming_an_unknown_metric_is_told_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown metric 's_per_imag'") as err:
        require("s_per_imag")
    assert "did you mean 's_per_image'" in str(err.value)
    assert require("aesthetic", available=["aesthetic"]).name == "aesthetic"  # an old store's own name is fine
    with pytest.raises(ConfigError, match="higher or lower 'aesthetic'"):
        direction_of("aesthetic")


# ---------------------------------------------------------------------------------------------
# One formatter: one cell prints the same in show, the console report and markdown


def _cell() -> CellResult:
    metrics = {m: v for m, v in VALUES.items()}
    return CellResult("schedulers", {"scheduler": "euler"}, {"batch": 2}, metrics=metrics, samples={"call_s": [2.4, 2.468, 2.5]})


def test_show_console_and_markdown_print_a_cell_the_same() -> None:
    cell = _cell()
    run = RunInfo(1, "2026-01-01T00:00:00", None, "finished", "bench", {}, {}, [cell])
    full = metric_texts(cell, list(VALUES))
    assert full["s_per_image"] == "1.2 s [1.20–1.25]"  # call_s / batch: 3 repeats, so min–max; 2 figures from the spread
    show = _text(cells_table(run), width=520)  # every registered metric in one row
    console = get_renderer("console").render(run, ReportOptions(width=520))
    markdown = get_renderer("markdown").render(run)
    for name, text in full.items():
        for out, where in ((show, "show"), (console, "console"), (markdown, "markdown")):
            assert text in out, f"{name}: {text!r} missing from {where}"
            assert metric_header(name) in out, f"{name}: header {metric_header(name)!r} missing from {where}"
    # the values the two old formatters disagreed on
    assert "0.81 1/s" not in show and "1.607e+12" not in show and "28.25 dB" not in markdown
    # compact views (show, report --format console in a terminal): the key metrics, no spread
    compact_show = _text(cells_table(run, compact=True))
    compact_console = get_renderer("console").render(run, ReportOptions(width=400, compact=True))
    for name in key_metrics():
        text = format_metric(name, cell.metrics[name])
        assert text in compact_show and text in compact_console
    assert "[1.20–1.25]" not in compact_show and "[1.20–1.25]" not in compact_console
    assert "denoiser evals" not in compact_show and "denoiser evals" not in compact_console


# ---------------------------------------------------------------------------------------------
# Adding a metric: one registry entry (the worked example in docs/architecture.md)


def test_adding_a_metric_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = METRICS.copy()
    registry.register(
        Metric("lpips", "", "lower", "LPIPS", "number", 3, sample="lpips", quality="lpips", help="learned perceptual distance to a reference")
    )
    monkeypatch.setattr(diffprof.metrics, "METRICS", registry)

    # header, unit, direction, formatting and column order
    assert metric("lpips").unit == "" and direction_of("lpips") == "lower"
    assert format_metric("lpips", 0.123456) == "0.123" and metric_header("lpips") == "LPIPS"
    assert ordered(["lpips", "s_per_image", "aesthetic"]) == ["s_per_image", "lpips", "aesthetic"]
    assert quality_metrics()[-1] == "lpips"

    def cell(lpips: list[float]) -> CellResult:
        return CellResult("quality", {"steps": 4}, {}, metrics={"s_per_image": 1.0, "lpips": sum(lpips) / len(lpips)}, samples={"lpips": lpips})

    # the tables pick it up
    table = suite_table("quality", [cell([0.1, 0.11, 0.12])])
    assert "LPIPS" in table.headers and table.rows[0].text["lpips"] == "0.11"
    # compare finds its direction and its samples without being told
    a = RunInfo(1, "2026-01-01T00:00:00", None, "finished", "a", {}, {}, [cell([0.10, 0.11, 0.10, 0.11, 0.10])])
    b = RunInfo(2, "2026-01-02T00:00:00", None, "finished", "b", {}, {}, [cell([0.20, 0.21, 0.20, 0.21, 0.20])])
    result = compare(a, b, metric="lpips")
    assert (result.direction, result.sample) == ("lower", "lpips")
    assert [c.verdict for c in result.cells] == ["regression"] and result.cells[0].test == "welch-log calls"
    # and the quality plots would choose it when nothing else was scored
    assert quality_metric_of(a.cells) == "lpips"
