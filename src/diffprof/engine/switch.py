"""What one optimization switch is: the fields it sets, when it is applied, what it needs.

The entries themselves are :data:`diffprof.engine.switches.REGISTRY`; this module holds their types
and the constructors of the rules they carry. Nothing here imports torch (the capability check
imports it when it runs, on a CUDA device only).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from diffprof.errors import ConfigError

if TYPE_CHECKING:
    from diffprof.engine.switches import Optimizations


class Phase(IntEnum):
    """When a step runs; the order that works. Steps of one phase run in registry order."""

    GLOBAL = 0  # process-wide backend settings, held until Engine.close (process_settings)
    COMPONENTS = 1  # which components the pipeline keeps (SD3 without its T5), before anything is placed
    ATTENTION = 2  # attention processors
    FUSE = 3  # fused projections (they replace the processors with fused SDPA ones)
    MEMORY_FORMAT = 4  # channels_last, before any hook or compile sees the weights
    VAE = 5  # VAE decode modes
    PLACE = 6  # .to(device), or the offloads' hooks (sequential, group, T5 only)
    PLACED = 7  # what needs the weights where they will stay (fused weight sharing)
    QUANTIZE = 8  # fp8 / int8 weights / fp8 storage, before compile so it fuses the casts
    COMPILE = 9  # torch.compile, on the final modules
    HOOKS = 10  # model offload hooks: after compile, so they stay outside the compiled code


@dataclass
class Applying:
    """What a step works on: the pipeline, the whole switch set, the device, and the stack that
    holds the process-global settings entered for this pipeline (unwound by ``Engine.close``)."""

    pipe: Any
    opts: Optimizations
    device: Any
    settings: ExitStack


@dataclass(frozen=True)
class Step:
    """One thing a switch does to a pipeline, in its phase, through diffusers' public API."""

    phase: Phase
    run: Callable[[Applying], None]


@dataclass(frozen=True)
class Target:
    """Where a switch set is to run: validated against by the rules."""

    device: Any  # torch.device, or anything with .type
    precision: str

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass(frozen=True)
class Rule:
    """A condition a switch cannot run under, and what to tell the user (message + hint)."""

    broken: Callable[[Optimizations, Target], bool]
    message: str | Callable[[Optimizations], str]
    hint: str
    #: What an unconditional requirement needs (``CUDA``, a package, ``compile``); ``None`` for a conflict.
    needs: str | None = None

    def check(self, opts: Optimizations, target: Target) -> None:
        if self.broken(opts, target):
            raise ConfigError(self.message(opts) if callable(self.message) else self.message, self.hint)


def needs_cuda(message: str, hint: str, when: Callable[[Optimizations], bool] | None = None) -> Rule:
    """Refused off CUDA (only where ``when`` holds, e.g. one compile mode)."""
    if when is None:
        return Rule(lambda o, t: not t.cuda, message, hint, needs="CUDA")
    return Rule(lambda o, t: when(o) and not t.cuda, message, hint)


def needs_package(package: str, message: str, hint: str) -> Rule:
    """Refused when ``package`` is not installed (looked up, not imported)."""
    return Rule(lambda o, t: importlib.util.find_spec(package) is None, message, hint, needs=package)


def needs_capability(capability: tuple[int, int], message: str, hint: str) -> Rule:
    """Refused on a CUDA GPU older than ``capability``; put it after :func:`needs_cuda`."""

    def broken(opts: Optimizations, target: Target) -> bool:
        import torch

        return bool(torch.cuda.get_device_capability(target.device) < capability)

    return Rule(broken, message, hint, needs=f"compute capability {capability[0]}.{capability[1]}")


def needs_compile(name: str) -> Rule:
    """For switches that only change how torch.compile works."""
    return Rule(lambda o, t: not o.compile, f"{name} changes how torch.compile works; nothing is compiled", f"add compile (or fast), or drop {name}", needs="compile")


def conflict(when: Callable[[Optimizations], bool], message: str | Callable[[Optimizations], str], hint: str) -> Rule:
    """Refused in combination with other switches (``when`` reads the whole set)."""
    return Rule(lambda o, t: when(o), message, hint)


@dataclass(frozen=True)
class Group:
    """Switches that exclude each other (one attention implementation, one offload mode)."""

    name: str
    message: Callable[[list[str]], str]
    hint: str


@dataclass(frozen=True)
class FamilyRule:
    """The pipeline families a switch works on, for switches that act on a component only some families
    have or can do without (SD3 runs without its T5; FLUX cannot). Checked once the model is known
    (:meth:`Optimizations.check_model`); a model of unknown family (a Hub id before loading) passes."""

    families: tuple[str, ...]
    #: Why it cannot run on a family, per family; others get ``otherwise`` (``{family}`` is filled in).
    why: Mapping[str, str]
    otherwise: str
    hint: str

    def refusal(self, name: str, family: str | None) -> ConfigError | None:
        if family is None or family in self.families:
            return None
        reason = self.why.get(family, self.otherwise.format(family=family))
        return ConfigError(f"{name} cannot run on a {family} model: {reason}", self.hint)


@dataclass(frozen=True)
class Switch:
    """One switch a user can name. See docs/architecture.md, "Adding an optimization switch"."""

    name: str
    help: str
    #: The :class:`Optimizations` fields it sets (a plain on/off switch: ``{name: True}``).
    sets: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Its exclusive group: naming two of a group is refused when parsing.
    group: Group | None = None
    #: Switches it turns on too (``cuda_graph`` runs in ``fast_loop``); a label leaves them out.
    implies: tuple[str, ...] = ()
    #: ``NAME=VALUE`` switches: (set so far, VALUE) -> the fields to set ...
    parse_value: Callable[[Optimizations, str], Mapping[str, Any]] | None = None
    #: ... and its canonical token in a set, ``None`` when off (the inverse).
    format_value: Callable[[Optimizations], str | None] | None = None
    #: What it does to a pipeline, each in its phase.
    apply: tuple[Step, ...] = ()
    #: It puts the pipeline on the device itself (offload); without one, ``pipe.to(device)``.
    places: bool = False
    #: Checked by :meth:`Optimizations.validate` when it is on: ``requires`` first, then ``conflicts``.
    requires: tuple[Rule, ...] = ()
    conflicts: tuple[Rule, ...] = ()
    #: Dropped from the user's switches in a suite cell that has any of these (memory suite, ``yield_to``).
    yields_to: tuple[str, ...] = ()
    #: The token ``fast`` contributes (``compile=unet+vae``); ``None``: not part of ``fast``.
    fast: str | None = None
    #: It turns torch.compile on; it and the switches that need it are left out of the eager cells
    #: of a suite (``uncompiled``).
    compiles: bool = False
    #: How ``diffprof optimizations`` names it, when not by its name (``compile_mode=MODE``).
    listed_as: str | None = None
    #: The denoisers it works on (``unet``, ``transformer``); on another it is refused by
    #: :meth:`Optimizations.check_model` once the pipeline is known, and memory-suite defaults
    #: leave it out (sliced and eager attention reach the UNet's processors only).
    denoisers: tuple[str, ...] = ("unet", "transformer")
    #: The denoisers whose ``fast`` holds it (fp8: transformers only; on SD's UNet it moved the latents
    #: 3.4e-2 and saved no time); ``fast`` resolved for a model reads it (:func:`~diffprof.engine.switches.expand_fast`).
    fast_on: tuple[str, ...] = ("unet", "transformer")
    #: In ``fast`` only where the device runs it (its ``requires`` hold there): fp8 needs float8 tensor
    #: cores; elsewhere ``fast`` leaves it out and says so, instead of refusing the whole preset.
    fast_where_supported: bool = False
    #: The families it works on, when not every family (``drop_t5``: SD3 only).
    families: FamilyRule | None = None

    def updates(self, opts: Optimizations, value: str) -> Mapping[str, Any]:
        """The fields this switch sets when named as ``name`` or ``name=value``."""
        return self.parse_value(opts, value) if self.parse_value is not None else self.sets

    def token(self, opts: Optimizations, defaults: Optimizations) -> str | None:
        """This switch's canonical token if ``opts`` has it on, else ``None``. A switch that sets
        only defaults (``none``, ``sdpa``) never shows."""
        if self.format_value is not None:
            return self.format_value(opts)
        if not self.sets or all(getattr(defaults, f) == v for f, v in self.sets.items()):
            return None
        return self.name if all(getattr(opts, f) == v for f, v in self.sets.items()) else None

    @property
    def needs(self) -> tuple[str, ...]:
        """What it always needs (``("CUDA",)`` for the offloads)."""
        return tuple(r.needs for r in self.requires if r.needs)

    def check(self, opts: Optimizations, target: Target) -> None:
        for rule in (*self.requires, *self.conflicts):
            rule.check(opts, target)


class Registry:
    """The switches in label order, with the lookups derived from them. :meth:`plus` gives a copy
    with one more entry (how a test tries a new switch without touching the real one)."""

    def __init__(self, entries: tuple[Switch, ...]) -> None:
        self.entries = entries
        self.by_name = {s.name: s for s in entries}
        if len(self.by_name) != len(entries):
            raise ValueError("two switches share a name")
        self.groups: tuple[Group, ...] = tuple(dict.fromkeys(s.group for s in entries if s.group is not None))
        #: What the ``fast`` preset expands to when the model is not known, in registry order: the
        #: elements every denoiser's ``fast`` holds (:meth:`fast_for` adds a denoiser's own).
        self.fast: tuple[str, ...] = self.fast_for(None)

    def fast_for(self, denoiser: str | None) -> tuple[str, ...]:
        """The tokens ``fast`` holds on a model whose denoiser is ``denoiser`` (``None``: the elements
        every denoiser's ``fast`` holds), in registry order."""
        every = {"unet", "transformer"}
        return tuple(s.fast for s in self.entries if s.fast and (set(s.fast_on) >= every if denoiser is None else denoiser in s.fast_on))

    def __iter__(self) -> Iterator[Switch]:
        return iter(self.entries)

    def get(self, token: str) -> Switch | None:
        """The entry a token (``compile=unet+vae`` too) names, if any."""
        return self.by_name.get(token.partition("=")[0])

    def plus(self, switch: Switch, after: str | None = None) -> Registry:
        """A copy with ``switch`` added after the entry ``after`` (its place in a label), else last."""
        entries = list(self.entries)
        entries.insert(entries.index(self.by_name[after]) + 1 if after else len(entries), switch)
        return Registry(tuple(entries))
