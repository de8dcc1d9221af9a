"""Console: the comparison table (rich), then the environment and machine-state differences."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from diffprof.analysis.compare import Comparison
from diffprof.report.comparison.base import CompareOptions, ComparisonRenderer, register
from diffprof.report.comparison.rows import environment_rows, machine_rows


def _pairs(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=Text(title, style="bold"), title_justify="left")
    for name in ("", "A", "B"):
        table.add_column(name, overflow="fold")
    for key, a, b in rows:
        table.add_row(Text(key), Text(a), Text(b))
    return table


def comparison_renderables(comparison: Comparison) -> RenderableType:
    """What ``diffprof compare`` prints: the table with its caption, then the machine states, then
    the environment fields that differ."""
    from diffprof.report.console_tables import comparison_table

    parts: list[RenderableType] = [comparison_table(comparison), Text(""), _pairs("machine state", machine_rows(comparison))]
    env = environment_rows(comparison)
    if env:
        parts += [Text(""), _pairs("environment differences", env)]
    return Group(*parts)


@register
class ConsoleComparisonRenderer(ComparisonRenderer):
    name = "console"
    file_extension = "txt"

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:
        options = options or CompareOptions()
        buf = io.StringIO()
        console = Console(file=buf, width=options.width, color_system="truecolor" if options.color else None, force_terminal=options.color, legacy_windows=False)
        console.print(comparison_renderables(comparison))
        return buf.getvalue()
