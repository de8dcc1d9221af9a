"""One table routine for every suite: cells in, columns and formatted rows out.

Sweep axes are labels (the idea of ``torch.utils.benchmark.Compare``), so no suite needs code of
its own: the label keys become the leading columns, then every metric some cell of the suite has,
known metrics in a fixed order and unknown ones (quality scores added later: ``clip_score``,
``psnr``...) after them by name. Console, markdown and html print :class:`SuiteTable`; csv and the
pandas frame use :func:`flat_records`, the same numbers unformatted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from diffprof.results import METRIC_UNITS, NOTE_KEYS, CellResult, RunInfo
from diffprof.stats import SampleStats
from diffprof.units import fmt_bytes, fmt_pct, fmt_seconds

ColumnKind = Literal["status", "label", "metric", "noise", "error"]

#: Column headers of known metrics, in the order tables show them: speed first, then the time of
#: each pipeline component, memory, then cost figures.
METRIC_HEADERS: dict[str, str] = {
    "s_per_image": "s/image",
    "steps_per_s": "steps/s",
    "images_per_s": "images/s",
    "s_per_call": "s/call",
    "text_encode_s": "text encode",
    "step_median_s": "step",
    "vae_decode_s": "VAE decode",
    "peak_allocated_bytes": "peak alloc",
    "peak_reserved_bytes": "peak reserved",
    "nvml_used_bytes": "GPU used (NVML)",
    "host_peak_rss_bytes": "host peak RSS",
    "load_s": "load",
    "compile_s": "compile",
    "flops_per_image": "FLOP/image",
    "achieved_tflops": "TFLOP/s",
    "mfu": "MFU",
    "energy_j_per_image": "J/image",
    "images_per_kj": "images/kJ",
    "first_call_s": "first call",
    "unet_evals": "UNet evals",
    "vae_encode_s": "VAE encode",
}

#: Metrics whose header already names the unit, so the cell shows a bare number.
_BARE_NUMBER = frozenset({"steps_per_s", "images_per_s", "achieved_tflops", "energy_j_per_image", "images_per_kj"})
#: Fractions shown as percentages.
_PERCENT = frozenset({"mfu"})
#: Memory metrics in order of preference for plots (the allocator's peak is the honest one).
MEMORY_METRICS: tuple[str, ...] = ("peak_allocated_bytes", "peak_reserved_bytes", "nvml_used_bytes", "host_peak_rss_bytes")


# ---------------------------------------------------------------------------------------------
# Formatting


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def metric_unit(name: str) -> str:
    return METRIC_UNITS.get(name, "")


def metric_header(name: str) -> str:
    return METRIC_HEADERS.get(name, name)


def _si(value: float, unit: str) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_metric(name: str, value: float | None) -> str:
    """A metric value as a table shows it: ``1.23 s``, ``4.5 GiB``, ``12.3``, ``41%``; ``-`` if absent."""
    if value is None or _missing(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    unit = metric_unit(name)
    if name in _PERCENT:
        return fmt_pct(value)
    if name in _BARE_NUMBER:
        return f"{value:.3g}"
    if unit == "s":
        return fmt_seconds(value)
    if unit == "B":
        return fmt_bytes(value)
    if unit == "FLOP":
        return _si(value, "FLOP")
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def format_value(value: Any) -> str:
    """A label or setting value: numbers without trailing zeros, containers as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def first_line(text: str | None) -> str:
    """The first non-empty line of an error (tracebacks belong in the failure summary)."""
    if not text:
        return ""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


# ---------------------------------------------------------------------------------------------
# Per-cell statistics


def images_per_call(cell: CellResult) -> int:
    """How many images one call makes: the ``batch`` setting (or label), 1 when absent."""
    batch = cell.settings.get("batch", cell.labels.get("batch", 1))
    try:
        return max(1, int(batch))
    except (TypeError, ValueError):
        return 1


def time_stats(cell: CellResult) -> SampleStats | None:
    """Seconds per image, one sample per repeat: ``samples["s_per_image"]`` or ``call_s / batch``.

    The spread of these samples is what the ``±`` and the noise flag report; ``None`` when the
    cell kept no samples.
    """
    if cell.samples.get("s_per_image"):
        return SampleStats.from_samples(cell.samples["s_per_image"], "s")
    calls = cell.samples.get("call_s")
    if not calls:
        return None
    n = images_per_call(cell)
    return SampleStats.from_samples([c / n for c in calls], "s")


def seconds_per_image(cell: CellResult) -> float | None:
    """The cell's headline time: the ``s_per_image`` metric, else the median of its samples."""
    value = cell.metrics.get("s_per_image")
    if not _missing(value):
        return float(value)
    stats = time_stats(cell)
    return stats.median if stats is not None and stats.count else None


def common_settings(cells: Sequence[CellResult]) -> dict[str, Any]:
    """Settings every cell shares and no cell sweeps: what a table's caption says once."""
    if not cells:
        return {}
    swept = {k for c in cells for k in c.labels} | set(NOTE_KEYS)  # notes are listed per cell
    first = cells[0].settings
    return {
        k: v
        for k, v in first.items()
        if k not in swept and all(k in c.settings and c.settings[k] == v for c in cells[1:])
    }


def format_settings(settings: dict[str, Any], max_len: int = 80) -> str:
    """``model=sd15, steps=20``; long values (prompts) are cut to ``max_len`` characters."""
    parts = []
    for k, v in settings.items():
        text = format_value(v)
        if len(text) > max_len:
            text = text[: max_len - 1] + "…"
        parts.append(f"{k}={text}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Suite tables


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` is a label name, a metric name or the kind itself."""

    key: str
    header: str
    kind: ColumnKind

    @property
    def numeric(self) -> bool:
        """Right-aligned in every format."""
        return self.kind == "metric"


@dataclass(frozen=True)
class Row:
    cell: CellResult
    text: dict[str, str]
    noisy: bool

    @property
    def failed(self) -> bool:
        return not self.cell.ok

    def texts(self, columns: Sequence[Column]) -> list[str]:
        return [self.text.get(c.key, "") for c in columns]


@dataclass(frozen=True)
class SuiteTable:
    """The cells of one suite, ready to print: columns, formatted rows, the shared settings."""

    suite: str
    columns: list[Column]
    rows: list[Row]
    common: dict[str, Any]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def text_rows(self) -> list[list[str]]:
        return [r.texts(self.columns) for r in self.rows]

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rows)

    @property
    def notes(self) -> list[str]:
        """Cells whose times are not what was asked, and why (``label: reason``): a refused CUDA
        graph or a task diffprof's loop does not cover (``FAST_PATH_NOTE``), or a kernel capture
        earlier in the process that taxes every launch (``TIMING_NOTE``), so a reader does not
        take those times at face value."""
        return [f"{r.cell.label}: {r.cell.settings[key]}" for r in self.rows for key in NOTE_KEYS if r.cell.settings.get(key)]


def ordered_metrics(names: Iterable[str]) -> list[str]:
    """Known metrics in :data:`METRIC_HEADERS` order, then :data:`METRIC_UNITS` order, then by name."""
    known = list(METRIC_HEADERS) + [m for m in METRIC_UNITS if m not in METRIC_HEADERS]
    names = set(names)
    return [m for m in known if m in names] + sorted(names - set(known))


def _label_keys(cells: Iterable[CellResult]) -> list[str]:
    seen: dict[str, None] = {}
    for c in cells:
        for k in c.labels:
            seen.setdefault(k, None)
    return list(seen)


#: The metrics a terminal has room for: time, throughput, components, memory, MFU, quality.
KEY_METRICS: tuple[str, ...] = (
    "s_per_image", "images_per_s", "step_median_s", "vae_decode_s",
    "peak_allocated_bytes", "mfu", "adherence", "psnr_db", "ssim", "clip_score",
)


def with_memory_stand_in(metrics: Sequence[str], present: Iterable[str]) -> list[str]:
    """``metrics``, plus host peak RSS when no GPU peak was measured (CPU runs): the memory figure
    a short list of metrics must not lose."""
    return [*metrics, *(["host_peak_rss_bytes"] if "peak_allocated_bytes" not in set(present) else [])]


def suite_table(suite: str, cells: Sequence[CellResult], only: Sequence[str] | None = None) -> SuiteTable:  # noqa: C901
    """Build the table of one suite (the cells in the order they were measured); ``only`` keeps
    just those metrics (host RSS stands in for GPU memory when no GPU peak was measured)."""
    labels = _label_keys(cells)
    present = {m for c in cells for m, v in c.metrics.items() if not _missing(v)}
    if only is not None:
        present &= set(with_memory_stand_in(only, present))
    metrics = ordered_metrics(present)
    stats = [time_stats(c) for c in cells]
    noisy = [bool(s is not None and s.noisy) for s in stats]

    columns = [Column("status", "status", "status")]
    columns += [Column(k, k, "label") for k in labels]
    columns += [Column(m, metric_header(m), "metric") for m in metrics]
    if any(noisy):
        columns.append(Column("noise", "noise", "noise"))
    if any(not c.ok for c in cells):
        columns.append(Column("error", "error", "error"))

    rows = []
    for cell, s, is_noisy in zip(cells, stats, noisy):
        text = {"status": cell.status, "error": first_line(cell.error)}
        text.update({k: format_value(cell.labels[k]) if k in cell.labels else "" for k in labels})
        for m in metrics:
            text[m] = format_metric(m, cell.metrics.get(m))
        if only is None and "s_per_image" in text and text["s_per_image"] != "-" and s is not None and s.count > 1:
            text["s_per_image"] += f" ± {fmt_seconds(s.iqr)}"  # the key-metrics view keeps only the noise flag
        text["noise"] = f"noisy (IQR {fmt_pct(s.relative_iqr)})" if is_noisy and s is not None else ""
        rows.append(Row(cell, text, is_noisy))
    return SuiteTable(suite, columns, rows, common_settings(cells))


def _describe_quality(about: dict[str, Any]) -> str:
    """One cell's ``settings["quality"]`` (written by suites.measure) as a phrase."""
    metrics = about.get("metrics") or []
    prompts = about.get("prompts")
    seeds = about.get("seeds") or []
    on = f"{prompts} {about.get('prompt_set', 'prompts')}" if prompts else "its prompts"
    if len(seeds) == 2:
        on += f" (seeds {seeds[0]}-{seeds[1]})" if seeds[0] != seeds[1] else f" (seed {seeds[0]})"
    parts = []
    if "adherence" in metrics:
        parts.append("adherence (shapes detector)")
    if "convergence" in metrics:
        parts.append("PSNR, SSIM and latent error against " + str(about.get("reference", "a reference solve")))
    if "clip" in metrics:
        parts.append(f"CLIP score ({about.get('clip_model', 'CLIP')})")
    return (", ".join(parts) or "quality") + f" on {on}"


def quality_note(cells: Sequence[CellResult]) -> str | None:
    """What the quality columns of these cells scored, in one sentence (``None`` when nothing was).

    Cells scored differently (tune's screens use fewer prompts) give one phrase each, joined by
    "or", so a reader never compares numbers without knowing what is behind them.
    """
    phrases: dict[str, None] = {}
    for cell in cells:
        about = cell.settings.get("quality")
        if isinstance(about, dict):
            phrases.setdefault(_describe_quality(about), None)
    if not phrases:
        return None
    return "Quality, scored outside the timed region: " + "; or ".join(phrases) + "."


def cells_by_suite(run: RunInfo) -> dict[str, list[CellResult]]:
    return {s: [c for c in run.cells if c.suite == s] for s in run.suites()}


def suite_tables(run: RunInfo, only: Sequence[str] | None = None) -> list[SuiteTable]:
    """One table per suite, suites in the order the run measured them."""
    return [suite_table(s, cells, only) for s, cells in cells_by_suite(run).items()]


# ---------------------------------------------------------------------------------------------
# Flat records (csv, pandas)

FIXED_COLUMNS = ("run_id", "suite", "status", "s_per_image_iqr", "noisy", "error")


def flat_records(run: RunInfo) -> tuple[list[str], list[dict[str, Any]]]:
    """One record per cell with raw values (SI units): ``run_id, suite, <labels>, status,
    <metrics>, s_per_image_iqr, noisy, error``.

    Labels become columns under their own name; a label named like a metric or a fixed column is
    prefixed ``label_`` so no value hides another.
    """
    metrics = ordered_metrics({m for c in run.cells for m in c.metrics})
    taken = set(FIXED_COLUMNS) | set(metrics)
    label_cols = {k: (f"label_{k}" if k in taken else k) for k in _label_keys(run.cells)}
    columns = ["run_id", "suite", *label_cols.values(), "status", *metrics, "s_per_image_iqr", "noisy", "error"]
    records = []
    for cell in run.cells:
        s = time_stats(cell)
        record: dict[str, Any] = {"run_id": run.id, "suite": cell.suite, "status": cell.status}
        record.update({col: cell.labels.get(k) for k, col in label_cols.items()})
        record.update({m: cell.metrics.get(m) for m in metrics})
        record["s_per_image_iqr"] = s.iqr if s is not None and s.count > 1 else None
        record["noisy"] = bool(s is not None and s.noisy)
        record["error"] = cell.error
        records.append(record)
    return columns, records
