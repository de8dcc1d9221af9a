"""The comparison report contract: a name, a file extension and ``render(comparison, options) -> str``.

Like the run renderers (:mod:`diffprof.report.base`): renderers only read a finished
:class:`~diffprof.analysis.compare.Comparison` (they never load runs or decide verdicts), and the
texts they share come from :mod:`~diffprof.report.comparison.rows`, so every format says the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from diffprof.analysis.compare import Comparison
from diffprof.errors import ConfigError, unknown_choice


@dataclass(frozen=True)
class CompareOptions:
    """What a comparison report includes; renderers ignore what does not concern them.

    Args:
        title (`str | None`): the heading; default ``run B vs run A``.
        width (`int`, defaults to 160): console width in characters.
        color (`bool`, defaults to False): console output carries ANSI colours.
    """

    title: str | None = None
    width: int = 160
    color: bool = False

    def __post_init__(self) -> None:
        if self.width < 40:
            raise ConfigError(f"report width {self.width} is too narrow", "use a width of at least 40 characters")

    def title_for(self, comparison: Comparison) -> str:
        return self.title or f"diffprof compare: run {side(comparison, 'B')} against run {side(comparison, 'A')}"


def side(comparison: Comparison, which: str) -> str:
    """``12 (baseline)``: a run's id with its name, for headings."""
    rid, name = (comparison.run_a, comparison.name_a) if which == "A" else (comparison.run_b, comparison.name_b)
    return f"{rid} ({name})" if name else str(rid)


class ComparisonRenderer:
    """One comparison format: set :attr:`name` and :attr:`file_extension`, implement :meth:`render`."""

    name: ClassVar[str]
    file_extension: ClassVar[str]

    def render(self, comparison: Comparison, options: CompareOptions | None = None) -> str:  # pragma: no cover
        raise NotImplementedError

    def write(self, comparison: Comparison, path: str | Path, options: CompareOptions | None = None) -> Path:
        """Render into ``path`` (a directory gets ``compare-A-B.<ext>``); returns the file written."""
        path = Path(path)
        if path.is_dir():
            path = path / f"compare-{comparison.run_a}-{comparison.run_b}.{self.file_extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(comparison, options), encoding="utf-8")
        return path


#: Comparison formats by name; filled by :func:`register` when :mod:`diffprof.report.comparison` is imported.
COMPARISON_RENDERERS: dict[str, type[ComparisonRenderer]] = {}


def register(cls: type[ComparisonRenderer]) -> type[ComparisonRenderer]:
    COMPARISON_RENDERERS[cls.name] = cls
    return cls


def get_comparison_renderer(name: str) -> ComparisonRenderer:
    """The comparison renderer called ``name``; an unknown name raises an error listing the formats."""
    from diffprof.report import comparison  # noqa: F401  (registers the built-in formats)

    if name not in COMPARISON_RENDERERS:
        raise unknown_choice("comparison format", name, COMPARISON_RENDERERS)
    return COMPARISON_RENDERERS[name]()
