"""Command-line options generated from :class:`~diffprof.config.RunConfig`'s field metadata.

``@config_options("bench")`` adds one typer option per field whose metadata names ``bench``: its
flag and short alias, help, default and help panel all come from the field, so a new field is one
line in the schema. The command receives ``overrides``: only the fields given on the command line,
converted (lists split at commas, numbers parsed), ready for :meth:`RunConfig.from_mapping` or to
override a config file. Options that are no config field (``--config``, ``--name``, ...) stay
declared by hand in the command.

typer reads a command's parameters from ``inspect.signature``; the wrapper's ``__signature__`` is
the command's own parameters plus the generated ones, which is all typer needs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Optional, TypeVar

import click
import typer

from diffprof.config import RunConfig, Spec, from_text

F = TypeVar("F", bound=Callable[..., Any])
_CTX = "_config_ctx"
#: Where a value came from when the user did not give it.
_NOT_GIVEN = ("DEFAULT", "DEFAULT_MAP")


def flag_of(name: str) -> str:
    """The flag that sets config field ``name`` (``suites`` -> ``--suite``), for messages."""
    return RunConfig.spec(name).option


def specs_for(command: str) -> list[Spec]:
    """The fields ``command`` exposes as options, in schema order."""
    return [s for s in RunConfig.specs().values() if command in s.commands]


def option_for(spec: Spec, help_suffix: str = "") -> Any:
    """The typer option of one field: its flag (``--x/--no-x`` for a negatable bool), short alias,
    help (lists say they take repeats and commas), default and help panel."""
    decl = spec.option
    if spec.type is bool and not spec.is_list and spec.negatable:
        decl += "/--no-" + decl[2:]
    decls = [decl, *([spec.short] if spec.short else [])]
    help = " ".join(filter(None, (spec.help, help_suffix, "Comma-separate or repeat." if spec.is_list else "")))
    default = list(spec.default) if spec.is_list else spec.default
    return typer.Option(default, *decls, help=help, rich_help_panel=spec.group, envvar=spec.envvar)


def annotation_for(spec: Spec) -> Any:
    """The type typer parses: list entries stay text (``10,20`` is split and converted afterwards)."""
    if spec.is_list:
        return list[str]
    return Optional[spec.type] if spec.optional else spec.type  # noqa: UP007 (typer reads typing.Optional)


def given_overrides(ctx: click.Context, specs: list[Spec], values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields given on the command line (not left at their defaults), converted."""
    out: dict[str, Any] = {}
    for spec in specs:
        source = ctx.get_parameter_source(spec.name)  # by name: typer may carry its own click
        if source is None or source.name in _NOT_GIVEN:
            continue
        value = values[spec.name]
        out[spec.name] = from_text(spec, value) if spec.is_list else value
    return out


def config_options(command: str, *, help_suffix: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorate a command that takes ``overrides: dict[str, Any]`` with the options of every field
    whose metadata names ``command`` (``help_suffix`` adds a command's own sentence to a field's help)."""
    specs = specs_for(command)
    suffix = dict(help_suffix or {})

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        if "overrides" not in sig.parameters:
            raise TypeError(f"{func.__name__} must take `overrides` to receive the config flags")
        own = [p for p in sig.parameters.values() if p.name != "overrides"]
        clash = sorted({p.name for p in own} & {s.name for s in specs})
        if clash:
            raise TypeError(f"{func.__name__} declares {', '.join(clash)} itself; the schema already gives {command} these options")
        unknown = sorted(set(suffix) - {s.name for s in specs})
        if unknown:
            raise TypeError(f"help_suffix names {', '.join(unknown)}, which {command} does not expose")
        ctx_names = [p.name for p in own if inspect.isclass(p.annotation) and issubclass(p.annotation, click.Context)]
        ctx_name = ctx_names[0] if ctx_names else _CTX
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        if not ctx_names:
            params.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))
        params += [
            inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=option_for(s, suffix.get(s.name, "")), annotation=annotation_for(s))
            for s in specs
        ]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            ctx = kwargs[ctx_name] if ctx_names else kwargs.pop(_CTX)
            values = {s.name: kwargs.pop(s.name) for s in specs}
            return func(**kwargs, overrides=given_overrides(ctx, specs, values))

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
        return wrapper  # type: ignore[return-value]

    return decorate
