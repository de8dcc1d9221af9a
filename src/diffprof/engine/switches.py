"""Precision and memory/speed optimizations as named, validated switches: parsing, labels and
validation over the registry (:mod:`diffprof.engine.registry`).

Users name switches (``--optimize vae_slicing,model_cpu_offload``). Each is one :class:`Switch`
entry in :data:`REGISTRY`: its help, the :class:`Optimizations` fields it sets, what it needs and
what it cannot be combined with (the error and its hint), its steps on a pipeline and their phase,
what it yields to in a suite cell, and whether ``fast`` holds it. Parsing, labels, validation,
applying (:func:`~diffprof.engine.apply.apply_optimizations`), ``diffprof optimizations`` and the
ablation suite are loops over it. The registry order is the order of a label; the order of
application is each step's :class:`~diffprof.engine.switch.Phase`.

Cheap to import: no torch or diffusers until a pipeline is changed or a GPU's capability is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from diffprof.engine import apply
from diffprof.engine.memory_switches import OFFLOADS, WEIGHTS, GroupLevel
from diffprof.engine.precision import check_precision
from diffprof.engine.registry import (
    ATTENTION,
    COMPILE_MODES,
    FAST_PRESET,
    OTHER_ATTENTION,
    REGISTRY,
    UNET,
    Attention,
    Offload,
)
from diffprof.engine.switch import Group, Phase, Step, Switch, Target
from diffprof.errors import ConfigError, unknown_choice

__all__ = ["ATTENTION", "COMPILE_MODES", "FAST_PRESET", "OFFLOADS", "OTHER_ATTENTION", "REGISTRY", "UNET", "WEIGHTS", "Optimizations",
           "compiles", "expand_fast", "fast_help", "fast_switches", "for_model", "label_switches", "runs_on", "switch_names", "uncompiled",
           "yield_to"]


def fast_help() -> str:
    extras = [s for s in REGISTRY if s.fast and s.fast not in REGISTRY.fast]
    more = "".join(f"; on {'/'.join(d + 's' for d in s.fast_on)} also {s.fast}" + (" where the device runs it" if s.fast_where_supported else "")
                   for s in extras)
    return "the fastest known set for CUDA: " + ", ".join(REGISTRY.fast) + more


def switch_names() -> list[str]:
    """Every name a user can type (``fast`` included)."""
    return [*REGISTRY.by_name, "fast"]


def fast_switches(denoiser: str | None = None) -> list[Switch]:
    """The entries ``fast`` holds on a ``denoiser`` model (``None``: on every model), in registry order."""
    tokens = set(REGISTRY.fast_for(denoiser))
    return [s for s in REGISTRY if s.fast in tokens]


def expand_fast(switches: Iterable[str], denoiser: str | None = None, runs: Any = None) -> list[str]:
    """``switches`` with ``fast`` replaced by its elements for a ``denoiser`` model (``None``: the
    elements every model's ``fast`` holds), so one can be removed. An element ``fast`` holds only where
    the device runs it (fp8) is left out when ``runs(switch)`` says the device cannot, and when the user
    names another switch of its group (``fast,int8_weights``: the int8 weights replace fast's fp8)."""
    switches = list(switches)
    named = {s.group for t in switches if t != "fast" and (s := REGISTRY.get(t)) is not None and s.group is not None}
    out: list[str] = []
    for switch in switches:
        if switch != "fast":
            out.append(switch)
            continue
        for token in REGISTRY.fast_for(denoiser):
            s = REGISTRY.by_name[token.partition("=")[0]]
            if s.fast_where_supported and ((s.group is not None and s.group in named) or (runs is not None and not runs(s))):
                continue
            out.append(token)
    return out


def runs_on(device: Any, precision: str) -> Callable[[Switch], bool]:
    """Whether a switch's requirements (CUDA, a package, a compute capability) hold on ``device`` at
    ``precision``: what ``fast`` asks of the elements it holds only where they run."""
    target = Target(device, precision)

    def runs(switch: Switch) -> bool:
        return _refusal(switch, target) is None

    return runs


def _refusal(switch: Switch, target: Target) -> str | None:
    try:
        for rule in switch.requires:
            rule.check(Optimizations(), target)
    except ConfigError as exc:
        return exc.message
    return None


def for_model(switches: str | Iterable[str] | Optimizations | None, denoiser: str | None, family: str | None, device: Any,
              precision: str) -> tuple[Optimizations, str | None]:
    """The switch set a model runs, and what ``fast`` left out on this device (``None``: nothing).

    ``fast`` expands for the model's ``denoiser``; an element it holds only where the device runs it
    (fp8 on a transformer) is left out where it cannot, with the reason, rather than refusing the whole
    preset. The set is then validated for ``device``/``precision`` and checked against the model."""
    if isinstance(switches, Optimizations):
        opts, note = switches, None
    else:
        tokens = [switches] if isinstance(switches, str) else list(switches or [])
        opts = Optimizations.parse(tokens, denoiser=denoiser, runs=runs_on(device, precision))
        asked = "fast" in {t.strip() for s in tokens for t in s.replace(" ", ",").split(",")}
        target = Target(device, precision)
        missing = [(s.name, why) for s in fast_switches(denoiser) if asked and s.fast_where_supported and not getattr(opts, next(iter(s.sets)), False)
                   and (why := _refusal(s, target))]
        note = "; ".join(f"fast on a {denoiser} holds {name} where the device runs it; left out here ({why})" for name, why in missing) or None
    opts.validate(device, precision)
    opts.check_model(denoiser, family)
    return opts, note


def compiles(switches: Iterable[str]) -> bool:
    """Whether ``switches`` turn torch.compile on (``compile``, ``compile_mode=...``, ``fast``)."""
    return any((s := REGISTRY.get(t)) is not None and s.compiles for t in expand_fast(switches))


def uncompiled(switches: Iterable[str]) -> list[str]:
    """``switches`` less everything that compiles or only shapes a compile (``compile``,
    ``compile=...``, ``compile_mode=...``, the switches that need compile; ``fast`` is expanded
    first): the eager cell of a suite that compares compiled with eager, built from the user's switches."""
    return [t for t in expand_fast(switches) if not ((s := REGISTRY.get(t)) and (s.compiles or "compile" in s.needs))]


def yield_to(switches: Iterable[str], cell: Optimizations, denoiser: str | None = None) -> tuple[list[str], list[str]]:
    """``switches`` (``fast`` expanded) less those that yield to a switch ``cell`` has on, and what
    was dropped; how a suite measures a memory setting on top of the user's switches instead of
    failing. A switch yields to the cell's own of its group (the cell's attention or offload
    replaces the user's) and to what its entry's ``yields_to`` names, which says why (any CPU
    offload leaves no room for the graph, diffprof's loop or fused QKV; sequential offload none for
    compiling; an attention other than SDPA excludes fused QKV)."""
    switches = list(switches)
    expanded = expand_fast(switches, denoiser)
    on = {s.name for s, _ in cell.active()}
    groups = {s.group for s, _ in cell.active() if s.group is not None}

    def yields(token: str) -> bool:
        s = REGISTRY.get(token)
        return s is not None and (s.group in groups or bool(on & set(s.yields_to)))

    keep = [t for t in expanded if not yields(t)]
    dropped = [s for s in expanded if s not in keep]
    return (list(dict.fromkeys(keep)), dropped) if dropped else (switches, [])


def label_switches(label: str) -> list[str]:
    """The switch names of an :attr:`Optimizations.label` or a ``+``-joined combination (its inverse):
    ``none`` -> ``[]``; a part that names no switch continues the ``NAME=VALUE`` before it, so
    ``compile=unet+vae`` stays one switch although ``+`` also joins switches."""
    if label == "none":
        return []
    out: list[str] = []
    for token in label.split("+"):
        if out and "=" in out[-1] and REGISTRY.get(token) is None and token != "fast":
            out[-1] += f"+{token}"
        else:
            out.append(token)
    return out


@dataclass(frozen=True)
class Optimizations:
    """A validated set of switches. Build it with :meth:`parse` from the names users type; the
    fields are what the registry's entries set (a new switch with state of its own adds one)."""

    attention: Attention = "sdpa"
    vae_slicing: bool = False
    vae_tiling: bool = False
    offload: Offload = "none"
    group_offload: GroupLevel = "block"
    t5_offload: bool = False
    drop_t5: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: tuple[str, ...] = ()
    compile_mode: str = "default"
    fast_loop: bool = False
    cuda_graph: bool = False
    text_cache: bool = False
    cudnn_benchmark: bool = False
    vae_bf16: bool = False
    fp8: bool = False
    int8_weights: bool = False
    layerwise_casting: bool = False
    kernel_tuning: bool = False
    compile_regions: bool = False

    @classmethod
    def parse(cls, switches: str | Iterable[str] | None, *, denoiser: str | None = None, runs: Any = None) -> Optimizations:
        """``"vae_slicing,compile=unet+vae,compile_mode=max-autotune"`` -> Optimizations. ``fast`` expands
        for a ``denoiser`` model when one is given (see :func:`expand_fast`; ``runs`` says what the device runs)."""
        opts = cls()
        if switches is None:
            return opts
        if isinstance(switches, str):
            switches = [switches]
        seen: dict[Group, list[str]] = {}
        tokens = [t.strip() for s in switches for t in s.replace(" ", ",").split(",") if t.strip()]
        for token in expand_fast(tokens, denoiser, runs):
            name, _, value = token.partition("=")
            switch = REGISTRY.by_name.get(name)
            if switch is None:
                raise unknown_choice("optimization", name, switch_names())
            if switch.group is not None:
                seen.setdefault(switch.group, []).append(name)
            opts = replace(opts, **switch.updates(opts, value))
            for implied in switch.implies:
                opts = replace(opts, **REGISTRY.by_name[implied].updates(opts, ""))
        for group in REGISTRY.groups:
            if len(seen.get(group, ())) > 1:
                raise ConfigError(group.message(seen[group]), group.hint)
        return opts

    def active(self) -> list[tuple[Switch, str]]:
        """The entries this set has on, with their tokens, in registry order."""
        defaults = _defaults(type(self))
        return [(s, t) for s in REGISTRY if (t := s.token(self, defaults))]

    def switches(self) -> list[str]:
        """Canonical switch names (the inverse of :meth:`parse`): registry order, implied switches
        left out, ``fast`` for its whole set."""
        on = self.active()
        implied = {n for s, _ in on for n in s.implies}
        out = [t for s, t in on if s.name not in implied]
        if set(REGISTRY.fast) <= set(out):
            out = ["fast"] + [o for o in out if o not in REGISTRY.fast]
        return out

    @property
    def label(self) -> str:
        """``vae_slicing+vae_tiling`` or ``none``: the memory suite's axis value."""
        return "+".join(self.switches()) or "none"

    def validate(self, device: Any, precision: str) -> None:
        """Raise a :class:`ConfigError` that says why (and what to do) for combinations that cannot
        work on ``device`` (a ``torch.device``) at ``precision``: each entry's ``requires`` then
        ``conflicts``, in registry order."""
        precision = check_precision(precision)
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError(
                f"fp16 on {device.type} is not supported: CPU kernels for half precision are missing or very slow",
                "use --precision bf16 or fp32 on the CPU, fp16 on a CUDA GPU",
            )
        target = Target(device, precision)
        for switch, _ in self.active():
            switch.check(self, target)

    def check_model(self, denoiser: str | None, family: str | None = None) -> None:
        """Refuse, before anything is applied, the switches of this set that do not work on a model
        with this ``denoiser`` (``unet`` or ``transformer``; the UNet-only ones named together) or of
        this ``family`` (``drop_t5`` on FLUX); ``None`` is not known yet and passes."""
        active = [s for s, _ in self.active()]
        refused = [s.name for s in active if denoiser is not None and denoiser not in s.denoisers]
        if refused:
            names = " and ".join(refused)
            raise ConfigError(f"{names} {'works' if len(refused) == 1 else 'work'} on UNet models only: diffusers' sliced and eager attention "
                              f"reach the UNet's attention processors, not a {denoiser}'s",
                              f"drop {names} for this model")
        for s in active:
            error = s.families.refusal(s.name, family) if s.families is not None else None
            if error is not None:
                raise error

    @property
    def places(self) -> bool:
        """A switch of this set puts the pipeline on the device itself (an offload): load it in host memory."""
        return any(s.places for s, _ in self.active())

    def steps(self) -> list[Step]:
        """What applying this set does, in phase order (registry order within a phase); without a
        switch that places the pipeline itself, it goes to the device in :attr:`Phase.PLACE`."""
        on = [s for s, _ in self.active()]
        steps = [step for s in on for step in s.apply]
        if not any(s.places for s in on):
            steps.append(Step(Phase.PLACE, apply.place_on_device))
        return sorted(steps, key=lambda step: step.phase)


@cache
def _defaults(cls: type[Optimizations]) -> Optimizations:
    return cls()
