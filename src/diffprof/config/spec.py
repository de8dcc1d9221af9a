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
def _bad(spec: Spec, expected: str, value: Any) -> ConfigError:
    bound = "" if spec.minimum is None else f" >= {spec.minimum:g}"
    return ConfigError(f"{spec.what} must be {expected}{bound}, got {value!r}")


def check_scalar(spec: Spec, value: Any) -> Any:
    """``value`` checked against the spec's type, range, choices and check; returned, normalized."""
    kind = spec.type
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{spec.what} must be true or false, got {value!r}")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool) or (spec.minimum is not None and value < spec.minimum):
            raise _bad(spec, "a whole number", value)
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise _bad(spec, "a number", value)
        if spec.minimum is not None and value < spec.minimum:
            raise _bad(spec, "a number", value)
        value = float(value)
    elif not isinstance(value, str):
        raise ConfigError(f"{spec.what} must be text, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise unknown_choice(spec.what, value, spec.choices)
    return spec.check(spec.what, value) if spec.check else value


def check_value(spec: Spec, value: Any) -> Any:
    """The whole field: ``None`` where allowed, lists entry by entry (a string is split at commas,
    as on the command line)."""
    if value is None and spec.optional:
        return None
    if spec.is_list:
        if isinstance(value, str):
            value = from_text(spec, [value])
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{spec.name} must be a list, got {value!r}", "give a list (YAML [a, b]) or one comma-separated string")
        return [check_scalar(spec, v) for v in value]
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
        raise ConfigError(f"{spec.what} takes {expected}, got {text!r}", f"e.g. {spec.option} {_EXAMPLES[spec.type]}") from exc


def from_text(spec: Spec, texts: Iterable[str]) -> Any:
    """A list field's value from repeated and/or comma-separated entries, each converted."""
    return [scalar_from_text(spec, t) for t in split_values(texts)]
