"""The suite contract: a suite turns a config into labelled cells, sweeping one axis.

A new suite is one module with one :class:`Suite` subclass registered in :data:`SUITES`. Suites
only *describe* cells; the runner measures them, so every suite gets warm-up, repeats, isolation,
failure capture and the store for free.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from diffprof.config import RunConfig
from diffprof.errors import unknown_choice
from diffprof.results import cell_key


@dataclass(frozen=True)
class Round:
    """Which round of its cell a measurement is: ``index`` of ``of`` (from 1), measuring ``calls``
    of the cell's repeats (:mod:`diffprof.suites.rounds` spreads them)."""

    index: int
    of: int
    calls: int


@dataclass(frozen=True)
class Cell:
    """One point of a sweep: the suite, its axis labels, and the full config to run.

    ``round`` is set on the round a runner hands an executor (a cell measured in rounds); it is
    no part of the cell's identity (:attr:`key`, :attr:`settings`), so every round of a cell is
    stored, resumed and compared as that one cell.
    """

    suite: str
    labels: dict[str, Any]
    config: RunConfig
    round: Round | None = None

    @property
    def calls(self) -> int:
        """Timed calls this measurement makes: its round's share, else all the repeats."""
        return self.round.calls if self.round is not None else self.config.repeats

    @property
    def settings(self) -> dict[str, Any]:
        """What identifies the work (no output paths or run options)."""
        c = self.config
        return {
            "model": c.model, "weights": c.weights, "device": c.device, "precision": c.precision,
            "optimize": sorted(c.optimize), "task": c.task, "prompt": c.prompt, "negative_prompt": c.negative_prompt,
            "scheduler": c.scheduler, "steps": c.steps, "guidance": c.guidance, "width": c.width, "height": c.height,
            "batch": c.batch, "seed": c.seed, "strength": c.strength, "image": c.image, "mask": c.mask,
            "repeats": c.repeats, "warmup": c.warmup,
        }

    @property
    def key(self) -> str:
        return cell_key(self.suite, self.labels, self.settings)

    @property
    def engine_key(self) -> tuple[Any, ...]:
        """Cells with the same engine key share one loaded pipeline."""
        c = self.config
        return (c.model, c.weights, c.device, c.precision, tuple(sorted(c.optimize)), c.allow_pickle)

    @property
    def label(self) -> str:
        return f"{self.suite}: " + (", ".join(f"{k}={v}" for k, v in self.labels.items()) or "default")

    @property
    def progress_label(self) -> str:
        """:attr:`label`, with ``(round 2/3)`` when it is one round of several."""
        more = self.round is not None and self.round.of > 1
        return self.label + (f" (round {self.round.index}/{self.round.of})" if more else "")


class Suite:
    name: ClassVar[str]
    axis: ClassVar[str]
    description: ClassVar[str]

    def cells(self, config: RunConfig) -> list[Cell]:  # pragma: no cover - interface
        raise NotImplementedError

    def cell(self, config: RunConfig, labels: dict[str, Any], **changes: Any) -> Cell:
        return Cell(self.name, labels, replace(config, **changes))


SUITES: dict[str, type[Suite]] = {}

#: Composite names: what `diffprof bench` with no --suite runs, and everything.
GROUPS: dict[str, tuple[str, ...]] = {
    "quick": ("schedulers", "steps", "resolutions", "batch", "memory"),
    "all": ("pipelines", "schedulers", "resolutions", "memory", "steps", "guidance", "batch", "precision", "tasks"),
}


def register(cls: type[Suite]) -> type[Suite]:
    SUITES[cls.name] = cls
    return cls


def check_suites(names: list[str]) -> list[str]:
    """Expand groups and check names; unknown -> error listing suites and groups."""
    from diffprof import suites  # noqa: F401  (registers the built-in suites)

    out: list[str] = []
    for name in names:
        if name in GROUPS:
            out += GROUPS[name]
        elif name in SUITES:
            out.append(name)
        else:
            raise unknown_choice("suite", name, [*SUITES, *GROUPS])
    return list(dict.fromkeys(out))


def expand(config: RunConfig) -> list[Cell]:
    """Every cell of every suite the config asks for, in suite order."""
    cells: list[Cell] = []
    for name in check_suites(config.suites):
        cells += SUITES[name]().cells(config)
    return cells


def cuda_expected(config: RunConfig) -> bool:
    import torch  # here, not at the top: checking suite names must not import torch

    return config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
