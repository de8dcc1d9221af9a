"""The typer application and the one place that turns user errors into exit codes.

Commands live in sibling modules (one per command group) and register themselves on :data:`app`.
A :class:`~diffprof.errors.DiffprofError` prints ``error: ...`` and its hint and exits 2 without a
traceback; ``--debug`` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click
import typer
from rich.console import Console
from rich.markup import escape

from diffprof import __version__
from diffprof.errors import DiffprofError
from diffprof.interrupts import Kept, as_interrupted, signals_interrupt

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


#: Third-party loggers that report their own setup on every import (torchao's optional CUDA
#: kernels it cannot load on this machine, torch's pytree deprecations of torchao's enums): nothing
#: a diffprof user can act on. Set to ERROR before anything imports them; ``--debug`` keeps them.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_libraries(debug: bool) -> None:
    """Keep third-party noise out of diffprof's output, at its source: diffusers/transformers log
    advice meant for their own users (torchvision fallbacks, dtype casts of random weights), torchao
    and torch log their import-time setup. Levels and warning filters only (stderr is not
    redirected: a real error still shows). ``--debug`` keeps it all."""
    import logging
    import os
    import warnings

    if debug:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", module=r"torch\.utils\._pytree")
    warnings.filterwarnings("ignore", module=r"torchao(\.|$)")


def _cli_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(exit, usage/parse error, abort) classes of click *and* of the copy of click that typer 0.2x
    bundles (``typer._click``): a parse error raised by the bundled copy is no ``click.ClickException``,
    and caught as one it escaped as a traceback with exit 1."""
    bundled = next((c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"), click.ClickException)
    exits = tuple({click.exceptions.Exit, typer.Exit})
    errors = tuple({click.ClickException, bundled})
    aborts = tuple({click.exceptions.Abort, typer.Abort})
    return exits, errors, aborts


def _print_error(message: str, hint: str | None) -> None:
    # soft_wrap: one line each however narrow the terminal (scripts grep these)
    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(_one_line(hint))}", highlight=False, soft_wrap=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_hint(exc: BaseException) -> str:
    """Where the valid options are listed: the failing command's own --help."""
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "diffprof"
    return f"run `{path} --help` for its options"


#: How to continue an interrupted run, per command (``diffprof bench`` registers ``--resume``);
#: a command without an entry gets the generic line.
CONTINUE: dict[str, Callable[[Kept, list[str]], str]] = {}


def _interrupted(exc: BaseException, args: list[str]) -> int:
    """Say what an interruption kept (the run, its stored cells) and how to go on; 130 / 143."""
    stopped = as_interrupted(exc)
    kept = stopped.kept
    err_console.print(f"interrupted ({stopped.signal_name})", highlight=False, soft_wrap=True)
    if kept is None:
        err_console.print("kept: whatever was written before this point (no run was being recorded)", highlight=False, soft_wrap=True)
        return stopped.exit_code
    of = f" of {kept.total}" if kept.total is not None else ""
    err_console.print(
        f"kept: run {kept.run_id} in {kept.db}: {kept.stored}{of} cells stored ({kept.ok} ok, {kept.failed} failed), each exactly once",
        highlight=False, soft_wrap=True,
    )
    if kept.finished:
        err_console.print("the run had finished measuring: only what follows it (its tables or report) was cut short", highlight=False, soft_wrap=True)
    command = next((a for a in args if not a.startswith("-")), "")
    follow = CONTINUE.get(command)
    if follow is not None:
        err_console.print(follow(kept, args), highlight=False, soft_wrap=True)
    return stopped.exit_code


def main(argv: list[str] | None = None, *, last: bool = False) -> int:
    """Console entry point: run the app, map errors to exit codes (2 = bad input; 130 / 143 =
    interrupted by SIGINT / SIGTERM, after saying what was kept). ``last``: the process exits next
    (:func:`run`), so once the command is done, signals no longer interrupt its teardown."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    quiet_libraries(debug)
    from diffprof.cli import commands  # noqa: F401  (registers every command)

    exits, errors, aborts = _cli_exceptions()
    with signals_interrupt(then_ignore=last) as caught:
        try:
            result = app(args=args, prog_name="diffprof", standalone_mode=False)
            if caught.last is not None:  # typer answered Ctrl-C / SIGTERM with exit code 130 of its own
                return _interrupted(caught.last, args)
        except DiffprofError as exc:
            if debug:
                raise
            _print_error(exc.message, exc.hint)
            return exc.exit_code
        except exits as exc:
            if caught.last is not None:
                return _interrupted(caught.last, args)
            return int(exc.exit_code)  # type: ignore[attr-defined]
        except errors as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `diffprof` alone: the help, as click shows it
                exc.show()  # type: ignore[attr-defined]
                return 2
            # a flag click could not parse (unknown option, not a number, missing value): the same
            # two lines and exit 2 as every other refusal
            _print_error(exc.format_message(), _usage_hint(exc))  # type: ignore[attr-defined]
            return 2
        except aborts as exc:
            if caught.last is not None or isinstance(exc.__cause__, KeyboardInterrupt):  # click's own Ctrl-C handling
                return _interrupted(caught.last or exc.__cause__, args)
            err_console.print("aborted")
            return 1
        except OSError as exc:
            # a path that cannot be written (a folder where a file is, no permission, disk full): what
            # was measured before it is already in the store
            if debug:
                raise
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            _print_error(f"{exc.strerror or exc}{where}", "choose a path whose folders exist or can be created (not a file) and that you may write")
            return 2
        except KeyboardInterrupt as exc:
            return _interrupted(exc, args)
    return int(result or 0)


def run() -> None:
    sys.exit(main(last=True))
