"""The exporter contract: a name, a file extension and ``render(profile) -> str``.

A new output format is one new module with one :class:`Exporter` subclass registered in
:data:`EXPORTERS`; nothing else changes (pyinstrument's renderer pattern).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from diffprof.errors import unknown_choice
from diffprof.profiler.record import Profile


class Exporter:
    name: ClassVar[str]
    file_extension: ClassVar[str]

    def render(self, profile: Profile) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def write(self, profile: Profile, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / f"profile.{self.file_extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(profile), encoding="utf-8")
        return path


EXPORTERS: dict[str, type[Exporter]] = {}


def register(cls: type[Exporter]) -> type[Exporter]:
    EXPORTERS[cls.name] = cls
    return cls


def get_exporter(name: str) -> Exporter:
    from diffprof.profiler import exporters  # noqa: F401  (registers the built-in formats)

    if name not in EXPORTERS:
        raise unknown_choice("profile format", name, EXPORTERS)
    return EXPORTERS[name]()
