"""Interruptions (Ctrl-C, ``kill``) as one exception that knows what was kept.

SIGINT and SIGTERM both become :class:`Interrupted`, a ``KeyboardInterrupt``, so every
``finally`` and context manager on the way out runs the same for both: a run is closed
``interrupted``, executors stop their workers, the store is checkpointed. Whoever recorded the run
on the way out attaches a :class:`Kept` (run id, cells stored, the store); the CLI prints it with
the command that continues, and exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM), as a
shell reports a process killed by that signal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass(frozen=True)
class Kept:
    """What an interrupted run left in the store: every cell it finished is there, once."""

    run_id: int
    db: str
    ok: int
    failed: int
    #: Cells the run was asked to measure (``None`` when it grows as it goes, as ``tune``'s does).
    total: int | None = None
    #: The run had finished measuring: the interruption cut short what follows it (a report, a fit).
    finished: bool = False

    @property
    def stored(self) -> int:
        return self.ok + self.failed


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; ``kept`` says what the interrupted run stored, when one was recording."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.kept: Kept | None = None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def as_interrupted(exc: BaseException) -> Interrupted:
    """``exc`` itself when it is an :class:`Interrupted`; a plain ``KeyboardInterrupt`` is a SIGINT."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


class Caught:
    """What :func:`signals_interrupt` raised last (click and typer turn a ``KeyboardInterrupt`` into
    an exit code of their own, so the caller looks here for what was kept)."""

    def __init__(self) -> None:
        self.raised: list[Interrupted] = []

    @property
    def last(self) -> Interrupted | None:
        """The interruption to report: one a recording run attached what it kept to, else the first
        (a second Ctrl-C while the first unwinds must not hide what the first one kept)."""
        with_kept = [i for i in self.raised if i.kept is not None]
        return with_kept[-1] if with_kept else (self.raised[0] if self.raised else None)


#: The :class:`Caught` of the innermost :func:`signals_interrupt` (what :func:`raise_pending` reads).
_ACTIVE: list[Caught] = []


def raise_pending() -> None:
    """Raise an interruption whose exception never reached the code it was meant for.

    A signal's exception is raised wherever the interpreter happens to be: in a ``__del__`` or a
    callback from C, Python prints "Exception ignored in ..." and carries on, and a run would go on
    measuring after its Ctrl-C (the interrupt campaign caught bench finishing all its cells that
    way). Loops call this where stopping is safe (between cells): a signal that was caught but
    swallowed is raised again there."""
    if _ACTIVE and _ACTIVE[-1].raised:
        raise _ACTIVE[-1].raised[-1]


@contextmanager
def signals_interrupt(*, then_ignore: bool = False) -> Iterator[Caught]:
    """While inside, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (recorded in
    the :class:`Caught` it yields); a second SIGTERM while the first unwinds gets the default action
    (the process ends), as a second Ctrl-C would. On the way out the previous handlers come back, or
    with ``then_ignore`` the signals are ignored: a process whose work is done and reported is not
    interrupted in its interpreter teardown (1-2 s with torch loaded), where a signal would end it
    with no message and the wrong exit code. Outside the main thread it only yields."""
    caught = Caught()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        caught.raised.append(Interrupted(signum))
        raise caught.raised[-1]

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _ACTIVE.append(caught)
    try:
        yield caught
    finally:
        _ACTIVE.remove(caught)
        for s, old in previous.items():
            signal.signal(s, signal.SIG_IGN if then_ignore else old)
