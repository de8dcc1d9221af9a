"""The ``--db`` option of the commands that read a store, and opening the store it names.

``--db`` takes a path (SQLite) or a ``postgresql://`` URL; without it ``DIFFPROF_DB`` names the
store, else ``./diffprof.db``. Commands that only read never create a store: a typo in the path
or URL is an error, not a new empty store (``bench``, ``push --to`` and ``pull`` create one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from diffprof.config import RunConfig
from diffprof.config.location import ENV

if TYPE_CHECKING:  # pragma: no cover
    from diffprof.store import Store


def db_option(help: str | None = None) -> Any:
    """``--db``, defaulting to ``$DIFFPROF_DB``, then ``diffprof.db``."""
    return typer.Option(RunConfig.default_of("db"), "--db", envvar=ENV, help=help or RunConfig.help_for("db"))


def open_store(db: str, *, create: bool = False) -> Store:
    """The store ``db`` names; one that does not exist is refused unless ``create``."""
    from diffprof.store import Store

    return Store(db, create=create)
