"""Errors that teach.

Every error a user can cause is a :class:`DiffprofError`: the message says what was wrong and
``hint`` says what to do. The CLI prints ``error: <message>`` and the hint on one line each and
exits with code 2; ``--debug`` shows the traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DiffprofError(Exception):
    """A mistake the user can fix; ``hint`` names the fix."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(DiffprofError, ValueError):
    """Invalid configuration value, key or combination."""


class ProfilerError(DiffprofError, RuntimeError):
    """Misuse of the profiler (unknown level, operations closed out of order)."""


class ModelError(DiffprofError):
    """A model or its weights could not be found or loaded."""


class InputError(DiffprofError, ValueError):
    """A file or value given on the command line is unusable."""


class StoreError(DiffprofError):
    """The results store does not hold what was asked for."""


class ResourceError(DiffprofError):
    """This machine lacks what the request needs (memory): refused before anything runs, with the
    numbers; ``--force`` runs it anyway."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid choice nearest to a misspelt ``word``, for 'did you mean' hints."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_choice(kind: str, value: str, choices: Iterable[str], error: type[DiffprofError] = ConfigError) -> DiffprofError:
    """Build the standard 'unknown X' error listing the valid names and the closest one."""
    names = sorted(choices)
    guess = closest(value, names)
    hint = f"did you mean {guess!r}? " if guess else ""
    return error(f"unknown {kind} {value!r}", f"{hint}valid: {', '.join(names)}")
