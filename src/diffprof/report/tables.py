"""One table routine for every suite: cells in, columns and formatted rows out.

Sweep axes are labels (the idea of ``torch.utils.benchmark.Compare``), so no suite needs code of
its own: the label keys become the leading columns, then every metric some cell of the suite has,
in registry order (:mod:`diffprof.metrics`), unregistered ones after them by name. Console,
markdown and html print :class:`SuiteTable`; ``show`` draws its rows with :func:`metric_texts`
too, so one cell reads the same everywhere; csv and pandas use
:func:`diffprof.analysis.frame.cell_records`, the same numbers unformatted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from diffprof.analysis.cells import time_stats
from diffprof.analysis.sanity import monotonic_flags
from diffprof.metrics import ordered
from diffprof.report.format import SPREAD_LEGEND, first_line, format_metric, format_spread, format_value, metric_header, missing
from diffprof.results import MODEL_NOTES, NOTE_KEYS, CellResult, RunInfo
from diffprof.units import fmt_pct

ColumnKind = Literal["status", "label", "metric", "count", "noise", "error"]


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
        return self.kind in ("metric", "count")


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
    #: Results of this suite that cannot be right (:func:`diffprof.analysis.sanity.monotonic_flags`).
    warnings: tuple[str, ...] = ()

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def text_rows(self) -> list[list[str]]:
        return [r.texts(self.columns) for r in self.rows]

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rows)

    @property
    def legend(self) -> str | None:
        """What the bracketed s/image column shows, when it shows a spread."""
        spread = any("[" in r.text.get("s_per_image", "") for r in self.rows)
        return f"s/image: {SPREAD_LEGEND}." if spread else None

    @property
    def notes(self) -> list[str]:
        """Cells whose times are not what was asked, and why (``label: reason``): a refused CUDA
        graph or a task diffprof's loop does not cover (``FAST_PATH_NOTE``), or a kernel capture
        earlier in the process that taxes every launch (``TIMING_NOTE``), so a reader does not
        take those times at face value. Notes about the model (stand-in tokenizers, ``MODEL_NOTES``)
        come once each, after the per-cell ones."""
        cells = [f"{r.cell.label}: {r.cell.settings[key]}" for r in self.rows for key in NOTE_KEYS
                 if key not in MODEL_NOTES and r.cell.settings.get(key)]
        model = dict.fromkeys(str(r.cell.settings[key]) for key in MODEL_NOTES for r in self.rows if r.cell.settings.get(key))
        return cells + list(model)


def _label_keys(cells: Iterable[CellResult]) -> list[str]:
    seen: dict[str, None] = {}
    for c in cells:
        for k in c.labels:
            seen.setdefault(k, None)
    return list(seen)


def with_memory_stand_in(metrics: Sequence[str], present: Iterable[str]) -> list[str]:
    """``metrics``, plus host peak RSS when no GPU peak was measured (CPU runs): the memory figure
    a short list of metrics must not lose."""
    return [*metrics, *(["host_peak_rss_bytes"] if "peak_allocated_bytes" not in set(present) else [])]


def shown_metrics(cells: Sequence[CellResult], only: Iterable[str] | None = None) -> list[str]:
    """The metric columns of ``cells``: every metric some cell holds, in registry order; ``only``
    keeps just those (host RSS standing in for GPU memory when no GPU peak was measured)."""
    present = {m for c in cells for m, v in c.metrics.items() if not missing(v)}
    if only is not None:
        present &= set(with_memory_stand_in(list(only), present))
    return ordered(present)


def metric_texts(cell: CellResult, metrics: Sequence[str], spread: bool = True) -> dict[str, str]:
    """The formatted metrics of one cell; with ``spread`` s/image is its median with the figures
    the repeats support and their spread (``1.2 s [1.19–1.21]``, :func:`format_spread`);
    compact views leave the spread to the noise flag."""
    text = {m: format_metric(m, cell.metrics.get(m)) for m in metrics}
    s = time_stats(cell)
    if spread and text.get("s_per_image", "-") != "-" and s is not None and s.count > 1:
        text["s_per_image"] = format_spread("s_per_image", s)
    return text


def repeat_count(cell: CellResult) -> str:
    """How many timed samples the cell's s/image comes from ('' when it kept none)."""
    s = time_stats(cell)
    return str(s.count) if s is not None and s.count else ""


def _unique_headers(columns: list[Column]) -> list[Column]:
    """A metric whose header a label already uses (the precision suite's ``compile`` label) is
    titled with its name too, so no two columns read alike."""
    taken = {c.header for c in columns if c.kind != "metric"}
    return [Column(c.key, f"{c.header} ({c.key})", c.kind) if c.kind == "metric" and c.header in taken else c for c in columns]


def noise_text(cell: CellResult) -> str:
    """``noisy (IQR 25.0%)`` when the cell's repeats spread by more than the threshold, else ''."""
    s = time_stats(cell)
    return f"noisy (IQR {fmt_pct(s.relative_iqr)})" if s is not None and s.noisy else ""


def suite_table(suite: str, cells: Sequence[CellResult], only: Sequence[str] | None = None) -> SuiteTable:
    """Build the table of one suite (the cells in the order they were measured); ``only`` keeps
    just those metrics (:func:`shown_metrics`) and drops the ± of s/image (a compact view)."""
    labels = _label_keys(cells)
    metrics = shown_metrics(cells, only)
    noise = [noise_text(c) for c in cells]

    columns = [Column("status", "status", "status")]
    columns += [Column(k, k, "label") for k in labels]
    columns += [Column(m, metric_header(m), "metric") for m in metrics]
    counts = [repeat_count(c) for c in cells]
    if only is None and "s_per_image" in metrics and any(counts):
        at = next(i for i, c in enumerate(columns) if c.key == "s_per_image") + 1
        columns.insert(at, Column("n", "n", "count"))
    columns = _unique_headers(columns)
    if any(noise):
        columns.append(Column("noise", "noise", "noise"))
    if any(not c.ok for c in cells):
        columns.append(Column("error", "error", "error"))

    rows = []
    for cell, noisy, count in zip(cells, noise, counts):
        text = {"status": cell.status, "error": first_line(cell.error), "noise": noisy, "n": count}
        text.update({k: format_value(cell.labels[k]) if k in cell.labels else "" for k in labels})
        text.update(metric_texts(cell, metrics, spread=only is None))
        rows.append(Row(cell, text, bool(noisy)))
    warnings = tuple(f.message for f in monotonic_flags(suite, cells))
    return SuiteTable(suite, columns, rows, common_settings(cells), warnings)


def _describe_quality(about: dict[str, Any]) -> str:
    """One cell's ``settings["quality"]`` (written by suites.measure) as a phrase."""
    metrics = about.get("metrics") or []
    prompts = about.get("prompts")
    seeds = about.get("seeds") or []
    prompt_set = str(about.get("prompt_set", "prompts"))
    one_prompt = prompt_set.startswith("the ")  # one prompt at several seeds: "the cell prompt at 4 seeds (10000-10003)"
    if one_prompt:
        on = f"{prompt_set} at {prompts} seed{'s' * (prompts != 1)}" if prompts else prompt_set
    else:
        on = f"{prompts} {prompt_set}" if prompts else "its prompts"
    if len(seeds) == 2:
        word = "" if one_prompt and prompts else ("seeds " if seeds[0] != seeds[1] else "seed ")
        on += f" ({word}{seeds[0]}-{seeds[1]})" if seeds[0] != seeds[1] else f" ({word}{seeds[0]})"
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
