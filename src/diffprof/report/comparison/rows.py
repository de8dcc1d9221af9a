"""The texts every comparison format shows: one row per matched cell, the caption lines, the diffs.

Values print through the one formatter (:mod:`diffprof.report.format`); a change is ``+12.3%``
(B against A), its interval ``[+8.1%, +16.7%]``; ``marker`` is the one-character sign of a verdict
(``▲`` regression, ``▼`` improvement, ``=`` same, ``?`` too noisy or not significant, ``!`` host
busy, ``✗`` failed, ``-`` missing) so a table read in black and white still shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffprof.analysis.compare import CellComparison, Comparison
from diffprof.analysis.machine import HostLoad, machine_summary
from diffprof.report.format import format_metric, format_value, metric_header
from diffprof.units import fmt_pct

MARKERS = {
    "regression": "▲",
    "improvement": "▼",
    "same": "=",
    "not significant": "?",
    "too noisy": "?",
    "host busy": "!",
    "failed": "✗",
    "missing": "-",
}
HEADERS = ("suite", "cell", "A", "B", "change", "interval", "p (adj.)", "n", "verdict", "note")
#: Verdicts that decide nothing: the data could not tell (too noisy, not significant) or the host
#: was busy. They never fail the gate; CI formats show them apart from passes and failures.
INCONCLUSIVE = ("not significant", "too noisy", "host busy")


def change_text(change: float | None) -> str:
    return "-" if change is None or not math.isfinite(change) else f"{100 * change:+.1f}%"


def interval_text(cell: CellComparison) -> str:
    if cell.low is None or cell.high is None:
        return "-"
    return f"[{change_text(cell.low - 1)}, {change_text(cell.high - 1)}]"


def p_text(cell: CellComparison) -> str:
    if cell.p_value is None:
        return "-"
    if cell.p_adjusted is None or cell.p_adjusted == cell.p_value:
        return f"{cell.p_value:.2g}"
    return f"{cell.p_value:.2g} ({cell.p_adjusted:.2g})"


@dataclass(frozen=True)
class Row:
    """One matched cell as text."""

    cell: CellComparison
    texts: tuple[str, ...]

    @property
    def verdict(self) -> str:
        return self.cell.verdict

    @property
    def marker(self) -> str:
        return MARKERS.get(self.cell.verdict, "")


def note_text(cell: CellComparison) -> str:
    note = cell.note
    if cell.settings_changes:
        changed = ", ".join(f"{k} {format_value(va)}->{format_value(vb)}" for k, (va, vb) in list(cell.settings_changes.items())[:3])
        note = "; ".join(filter(None, [note, f"settings differ: {changed}"]))
    if cell.history_runs:
        note = "; ".join(filter(None, [note, f"noise floor from {cell.history_runs} runs"]))
    return note


def _shown(mean: float | None, value: float | None) -> float | None:
    return mean if mean is not None else value


def comparison_rows(comparison: Comparison) -> list[Row]:
    """Every matched cell as the texts of :data:`HEADERS` (A and B: the geometric means of the
    values weighed, so that ``change`` is B/A of the numbers shown)."""
    rows = []
    for cell in comparison.cells:
        n = f"{cell.n_a}/{cell.n_b}" if cell.n_a or cell.n_b else "-"
        texts = (
            cell.suite, cell.label, format_metric(comparison.metric, _shown(cell.mean_a, cell.value_a)),
            format_metric(comparison.metric, _shown(cell.mean_b, cell.value_b)),
            change_text(cell.change), interval_text(cell), p_text(cell), n, f"{MARKERS.get(cell.verdict, '')} {cell.verdict}", note_text(cell),
        )
        rows.append(Row(cell, texts))
    return rows


def shown_value(cell: CellComparison, which: str) -> float | None:
    """The value a table shows for side ``which`` ("A"/"B"): the geometric mean of what was weighed."""
    return _shown(cell.mean_a, cell.value_a) if which == "A" else _shown(cell.mean_b, cell.value_b)


def verdict_reason(comparison: Comparison, cell: CellComparison) -> str:
    """The numbers behind one cell's verdict in a sentence, for formats with one message per cell
    (JUnit): ``s/image 1 s -> 1.3 s: +30.0% [+25.9%, +34.2%], beyond the 5% threshold; p=0.0012
    (0.0036) < 0.05, welch-log rounds, 3/3 values`` and the verdict's note."""
    c = comparison
    if cell.verdict in ("failed", "missing"):
        return cell.note
    values = f"{metric_header(c.metric)} {format_metric(c.metric, shown_value(cell, 'A'))} -> {format_metric(c.metric, shown_value(cell, 'B'))}"
    within = cell.change is not None and math.isfinite(cell.change) and abs(math.log1p(cell.change)) <= math.log1p(c.threshold)
    size = f"{change_text(cell.change)}" + ("" if interval_text(cell) == "-" else f" {interval_text(cell)}")
    parts = [f"{size}, {'within' if within else 'beyond'} the {fmt_pct(c.threshold)} threshold"]
    if cell.p_value is not None:
        p = cell.p_adjusted if cell.p_adjusted is not None else cell.p_value
        parts.append(f"p={p_text(cell)} {'<' if p < c.alpha else '>='} {c.alpha:g}, {cell.test}, {cell.n_a}/{cell.n_b} values")
    return "; ".join(filter(None, [f"{values}: {parts[0]}", *parts[1:], note_text(cell)]))


def heading(comparison: Comparison) -> str:
    """``s/image, lower is better · threshold 5% · alpha 0.05, Benjamini-Hochberg over 6 cells``."""
    c = comparison
    better = "lower" if c.direction == "lower" else "higher"
    tested = sum(1 for cell in c.cells if cell.p_value is not None)
    correction = {"bh": "Benjamini-Hochberg", "holm": "Holm", "none": "no correction"}[c.correction]
    return f"{metric_header(c.metric)}, {better} is better · threshold {fmt_pct(c.threshold)} · alpha {c.alpha:g}, {correction} over {tested} cells"


def caption_lines(comparison: Comparison) -> list[str]:
    """The summary, the geometric mean, unmatched cells and every warning, one per line."""
    c = comparison
    lines = [c.summary()]
    if c.geomean_ratio is not None:
        lines.append(f"geometric mean B/A {c.geomean_ratio:.3f}")
    needed = [cell.rounds_needed for cell in c.cells if cell.verdict == "too noisy" and cell.rounds_needed]
    if needed:
        lines.append(f"too noisy at {fmt_pct(c.threshold)}: about {max(needed)} rounds per run (--rounds, with as many --repeats) would resolve every such cell")
    for side, cells in (("A", c.only_a), ("B", c.only_b)):
        if cells:
            names = ", ".join(f"{x.suite} {x.label}" for x in cells[:5]) + (" ..." if len(cells) > 5 else "")
            lines.append(f"only in {side}: {names}")
    if any(cell.evidence == "rounds" and cell.p_value is not None and not cell.history_runs for cell in c.cells):
        lines.append("note: no earlier runs of these cells in the store, so drift between processes is not in the test "
                     "(keep 3+ runs of the baseline in the store, or bench with --isolate)")
    if c.speed_adjusted:
        lines.append(f"note: {c.speed_note}")
    lines += [f"warning: {w}" for w in c.warnings]
    return lines


def environment_rows(comparison: Comparison) -> list[tuple[str, str, str]]:
    """(key, A, B) for every environment field that differs."""
    return [(k, format_value(va), format_value(vb)) for k, (va, vb) in comparison.environment_changes.items()]


def machine_rows(comparison: Comparison) -> list[tuple[str, str, str]]:
    """(what, A, B): each run's machine state in one line, whether its host was busy, and the differences."""
    c = comparison
    rows = [
        ("machine", machine_summary(c.machine_a) or "not recorded", machine_summary(c.machine_b) or "not recorded"),
        ("host busy", _busy(c.load_a), _busy(c.load_b)),
    ]
    return rows + [("differs", change, "") for change in c.machine_changes]


def _busy(load: HostLoad) -> str:
    if not load.recorded:
        return "unknown"
    return f"yes ({load.reason})" if load.busy else f"no ({load.reason})"
