"""What the schema says about one field, and the checks and conversions every entry point shares.

A :class:`Spec` holds a field's help, group, range or static choices, and how the command line
spells it (flag, short alias, the commands that expose it); its type and default come from the
dataclass itself. :func:`check_value` validates a value by the declared type (the same for
YAML/TOML/JSON, CLI flags and Python), :func:`from_text` converts what a flag, a CSV cell or a
comma-separated YAML string gives. A new field is one line in :class:`~diffprof.config.RunConfig`.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field
from typing import Any

from diffprof.errors import ConfigError, unknown_choice

#: What a list field's entries may be; scalars are the same plus bool.
SCALARS: tuple[type, ...] = (bool, int, float, str)


@dataclass(frozen=True)
class Spec:
    """One field of the schema: type, default, help, range, choices and its command-line option."""

    name: str
    help: str
    group: str
    #: The scalar type, or the type of each entry of a list field: bool, int, float or str.
    type: type = str
    default: Any = None
    is_list: bool = False
    #: ``None`` is a valid value (it means "the model's own" or "not set").
    optional: bool = False
    #: Commands whose options include this field (``bench``, ``generate``, ``tune``, ``calibrate``).
    commands: tuple[str, ...] = ()
    #: The long flag, e.g. ``--suite``; default ``--field-name``.
    flag: str = ""
    short: str | None = None
    #: bools: ``--x/--no-x`` (False: ``--x`` alone).
    negatable: bool = True
    #: Static choices (names that do not belong to a registry above the config).
    choices: tuple[str, ...] | None = None
    #: Numbers: the smallest value allowed (inclusive).
    minimum: float | None = None
    #: Numbers: the largest value allowed (inclusive); where what takes the value has a limit.
    maximum: float | None = None
    #: What one value is called in errors ("step count", "task"); default: the field name.
    noun: str = ""
    #: A further check of each value (sizes, resolutions, device strings); returns it, normalized.
    check: Callable[[str, Any], Any] | None = None
    #: An environment variable whose value the command line takes when the flag is not given.
    envvar: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def what(self) -> str:
        return self.noun or self.name


def declare(default: Any, help: str, group: str, **meta: Any) -> Any:
    """A dataclass field whose metadata holds everything :class:`Spec` needs beyond type and default."""
    info = {"help": help, "group": group, **meta}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=info)
    return field(default=default, metadata=info)


def spec_of(f: Field[Any], hint: Any) -> Spec:
    """The :class:`Spec` of dataclass field ``f`` with resolved type annotation ``hint``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) < len(typing.get_args(hint))
    if optional:
        hint = args[0]
    is_list = typing.get_origin(hint) is list
    kind = typing.get_args(hint)[0] if is_list else hint
    if kind not in SCALARS:
        raise TypeError(f"RunConfig.{f.name}: {hint} is not a scalar or a list of one")
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    return Spec(name=f.name, type=kind, default=default, is_list=is_list, optional=optional, **f.metadata)


# ----------------------------------------------------------------------------- checking
def _range(spec: Spec) -> str:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" >= {low:g}"
    return f" <= {high:g}" if high is not None else ""


def example(spec: Spec) -> str:
    """One valid value of the field as text (its default, or the bottom of its range)."""
    default = spec.default
    if spec.choices:
        return spec.choices[0]
    if spec.type is bool:
        return "true"
    if isinstance(default, list):
        default = default[0] if default else None
    if default is None or isinstance(default, bool):
        default = {int: spec.minimum if spec.minimum is not None else 1, float: 7.5, str: "..."}.get(spec.type, "...")
    return f"{default:g}" if isinstance(default, float) else str(default)


def hint_of(spec: Spec, value: Any = None) -> str:
    """What to give instead, for every kind of field: the choices, or the type and range with an
    example; text that looks like the right value is told to lose its quotes."""
    if spec.choices is not None:
        text = f"valid: {', '.join(spec.choices)}"
    elif spec.type is bool:
        text = "use true or false"
    elif spec.type in (int, float):
        kind = "a whole number" if spec.type is int else "a number"
        text = f"give {kind}{_range(spec)}, e.g. {spec.option} {example(spec)}"
    else:
        text = f"give text, e.g. {spec.option} {example(spec)}"
    if isinstance(value, str) and spec.type is not str and _parses(spec, value):
        text = f"write it without quotes ({value.strip()}), or {text}"
    if spec.optional:
        text += "; or leave it out (or null) for the default"
    return text


def _parses(spec: Spec, text: str) -> bool:
    try:
        scalar_from_text(spec, text)
    except ConfigError:
        return False
    return True


def _bad(spec: Spec, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{spec.what} must be {expected}{_range(spec)}, got {_shown(value)}", hint_of(spec, value))


def _shown(value: Any) -> str:
    """``repr`` of a value, cut short (a huge int or a long list must not make a page of error)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _out_of_range(spec: Spec, value: float) -> bool:
    return (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum)


def check_scalar(spec: Spec, value: Any) -> Any:
    """``value`` checked against the spec's type, range, choices and check; returned, normalized.
    Every refusal is a :class:`ConfigError` with a hint."""
    kind = spec.type
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{spec.what} must be true or false, got {_shown(value)}", hint_of(spec, value))
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool) or _out_of_range(spec, value):
            raise _bad(spec, "a whole number", value)
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not _finite(value) or _out_of_range(spec, value):
            raise _bad(spec, "a finite number", value)
        value = float(value)
    elif not isinstance(value, str):
        raise ConfigError(f"{spec.what} must be text, got {_shown(value)}", hint_of(spec, value))
    if spec.choices is not None and value not in spec.choices:
        raise unknown_choice(spec.what, value, spec.choices)
    return spec.check(spec.what, value) if spec.check else value


def _finite(value: int | float) -> bool:
    """Finite and representable as a float (an int of 400 digits is neither)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_value(spec: Spec, value: Any) -> Any:
    """The whole field: ``None`` where allowed, lists entry by entry (a string is split at commas,
    as on the command line; never into letters)."""
    if value is None and spec.optional:
        return None
    if spec.is_list:
        if isinstance(value, str):
            value = from_text(spec, [value])
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{spec.name} must be a list, got {_shown(value)}",
                              f"give a list (YAML [{example(spec)}, ...]) or one comma-separated string")
        return [check_scalar(spec, v) for v in value]
    if value is None:
        raise ConfigError(f"{spec.what} cannot be empty (null)", hint_of(spec))
    return check_scalar(spec, value)


# ----------------------------------------------------------------------------- text
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_EXAMPLES = {int: "20 (lists: 10,20,30)", float: "7.5 (lists: 5,7.5)", bool: "true"}


def split_values(values: Iterable[str]) -> list[str]:
    """``["a,b", " c "]`` -> ``["a", "b", "c"]``: repeated and comma-separated entries alike."""
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]


def scalar_from_text(spec: Spec, text: str) -> Any:
    """One value of the spec's type from text (a CSV cell, one comma-separated entry)."""
    if spec.type is str:
        return text
    try:
        if spec.type is bool:
            word = text.strip().lower()
            if word not in (*_TRUE, *_FALSE):
                raise ValueError(text)
            return word in _TRUE
        return spec.type(text)
    except ValueError as exc:
        expected = {int: "whole numbers", float: "numbers", bool: "true or false"}[spec.type]
        raise ConfigError(f"{spec.what} takes {expected}, got {_shown(text)}", f"e.g. {spec.option} {_EXAMPLES[spec.type]}") from exc


def from_text(spec: Spec, texts: Iterable[str]) -> Any:
    """A list field's value from repeated and/or comma-separated entries, each converted."""
    return [scalar_from_text(spec, t) for t in split_values(texts)]
