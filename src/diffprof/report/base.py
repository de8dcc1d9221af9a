"""The report contract: a name, a file extension and ``render(run, options) -> str | bytes``.

A new report format is one new module with one :class:`Renderer` subclass decorated with
:func:`register`; nothing else changes (pyinstrument's renderer pattern). Renderers only read a
:class:`~diffprof.results.RunInfo`: they never measure, and the tabular logic they share lives in
:mod:`diffprof.report.tables` (values through :mod:`diffprof.report.format`) so every format shows
the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from diffprof.errors import ConfigError, unknown_choice
from diffprof.results import RunInfo


@dataclass(frozen=True)
class ReportOptions:
    """What a report includes; every renderer ignores the options that do not concern it.

    Args:
        title (`str | None`, defaults to ``"diffprof run #<id>"``): heading of console/markdown/html.
        include_artifacts (`bool`, defaults to True): json embeds artifacts base64-encoded (False
            omits them, for small files); html shows image grids and step timelines.
        plots (`bool`, defaults to True): html draws matplotlib figures (False: tables only, fast).
        color (`bool`, defaults to False): console output carries ANSI colours, for a terminal.
        width (`int`, defaults to 160): console width in characters.
        max_images (`int`, defaults to 24): images per suite in the html image grid; a sweep of
            hundreds of cells would otherwise make a report of hundreds of MB.
        compact (`bool`, defaults to False): console only: a one-line environment and the key
            metrics (``key`` in :mod:`diffprof.metrics`), so a run fits a terminal; every other format keeps all.
    """

    title: str | None = None
    include_artifacts: bool = True
    plots: bool = True
    color: bool = False
    width: int = 160
    max_images: int = 24
    compact: bool = False

    def __post_init__(self) -> None:
        if self.width < 40:
            raise ConfigError(f"report width {self.width} is too narrow", "use a width of at least 40 characters")
        if self.max_images < 0:
            raise ConfigError(f"max_images must be >= 0, got {self.max_images}", "use 0 to leave images out")

    def title_for(self, run: RunInfo) -> str:
        return self.title or f"diffprof run #{run.id}"


class Renderer:
    """One report format. Subclasses set :attr:`name` and :attr:`file_extension` and implement
    :meth:`render`; :meth:`write` is shared."""

    name: ClassVar[str]
    file_extension: ClassVar[str]

    def render(self, run: RunInfo, options: ReportOptions | None = None) -> str | bytes:  # pragma: no cover
        raise NotImplementedError

    def write(self, run: RunInfo, path: str | Path, options: ReportOptions | None = None) -> Path:
        """Render into ``path`` (a directory gets ``run-<id>.<ext>``); returns the file written."""
        path = Path(path)
        if path.is_dir():
            path = path / f"run-{run.id}.{self.file_extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        out = self.render(run, options)
        if isinstance(out, bytes):
            path.write_bytes(out)
        else:
            path.write_text(out, encoding="utf-8")
        return path


#: Report formats by name; filled by :func:`register` when :mod:`diffprof.report` is imported.
RENDERERS: dict[str, type[Renderer]] = {}
#: Other names a format answers to (``--format md``).
ALIASES: dict[str, str] = {"md": "markdown"}


def register(cls: type[Renderer]) -> type[Renderer]:
    RENDERERS[cls.name] = cls
    return cls


def get_renderer(name: str) -> Renderer:
    """The renderer called ``name`` (or an alias: ``md``); an unknown name raises an error listing the formats."""
    from diffprof import report  # noqa: F401  (registers the built-in formats)

    name = ALIASES.get(name, name)
    if name not in RENDERERS:
        raise unknown_choice("report format", name, RENDERERS)
    return RENDERERS[name]()
