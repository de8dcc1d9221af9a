"""The typer application and the one place that turns user errors into exit codes.

Commands live in sibling modules (one per command group) and register themselves on :data:`app`.
A :class:`~diffprof.errors.DiffprofError` prints ``error: ...`` and its hint and exits 2 without a
traceback; ``--debug`` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from diffprof import __version__
from diffprof.errors import DiffprofError

app = typer.Typer(
    name="diffprof",
    help=(
        "Profile, benchmark and tune Hugging Face diffusers pipelines.\n\n"
        "Start with `diffprof bench` (a quick suite on the built-in model, then an HTML report), "
        "`diffprof generate \"a red circle\"` for one instrumented generation, or "
        "`diffprof models` to see what can be loaded. Every command has --help."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

#: Width of tables written to a file or pipe (``diffprof bench > log``, CI logs): rich would use 80
#: columns there and squeeze a suite's metric columns to nothing. A terminal keeps its own width;
#: ``COLUMNS`` overrides both.
PIPE_WIDTH = 200


def _width(stream: object) -> int | None:
    isatty = getattr(stream, "isatty", None)
    return None if "COLUMNS" in os.environ or (isatty is not None and isatty()) else PIPE_WIDTH


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def _version(value: bool) -> None:
    if value:
        console.print(f"diffprof {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
) -> None:
    """Profile, benchmark and tune diffusers pipelines."""


def quiet_libraries(debug: bool) -> None:
    """diffusers/transformers log advice meant for their own users (torchvision fallbacks, dtype
    casts of random weights); diffprof reports what matters itself. ``--debug`` keeps it all."""
    import os

    if debug:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")


def _cli_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(exit, usage/parse error, abort) classes of click *and* of the copy of click that typer 0.2x
    bundles (``typer._click``): a parse error raised by the bundled copy is no ``click.ClickException``,
    and caught as one it escaped as a traceback with exit 1."""
    bundled = next((c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"), click.ClickException)
    exits = tuple({click.exceptions.Exit, typer.Exit})
    errors = tuple({click.ClickException, bundled})
    aborts = tuple({click.exceptions.Abort, typer.Abort})
    return exits, errors, aborts


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, map errors to exit codes (2 = bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    quiet_libraries(debug)
    from diffprof.cli import commands  # noqa: F401  (registers every command)

    exits, errors, aborts = _cli_exceptions()
    try:
        result = app(args=args, prog_name="diffprof", standalone_mode=False)
    except DiffprofError as exc:
        if debug:
            raise
        # soft_wrap: one line each however narrow the terminal (scripts grep these)
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except exits as exc:
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except errors as exc:
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except aborts:
        err_console.print("aborted")
        return 1
    except OSError as exc:
        # a path that cannot be written (a folder where a file is, no permission, disk full): what
        # was measured before it is already in the store
        if debug:
            raise
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        err_console.print(f"[bold red]error:[/] {escape(exc.strerror or str(exc))}{escape(where)}", highlight=False, soft_wrap=True)
        err_console.print("[dim]hint:[/] choose a path whose folders exist or can be created (not a file) and that you may write", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted: everything finished before this point is kept")
        return 130
    return int(result or 0)


def run() -> None:
    sys.exit(main())
