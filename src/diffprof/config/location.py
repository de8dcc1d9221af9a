"""What a ``--db`` value names: an SQLite file or a PostgreSQL database (plain parsing, no driver).

``diffprof.db``, ``results/x.db`` or ``:memory:`` is an SQLite file (the embedded default);
``postgresql://user@host:5432/dbname`` (or ``postgres://``, with libpq's query parameters such as
``?sslmode=require`` or ``?host=/run/postgresql``) is a PostgreSQL database. ``DIFFPROF_DB`` gives
the value when no ``--db`` is passed. The parsing lives beside the schema so that ``db`` is checked
where every other field is, before anything runs and without importing the store, which opens
what :func:`parse_location` returns (:mod:`diffprof.store.connection`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from diffprof.errors import ConfigError

Backend = Literal["sqlite", "postgresql"]
#: The environment variable that names the store when no ``--db`` is given.
ENV = "DIFFPROF_DB"
POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FORMS = "pass a file path such as diffprof.db (SQLite) or postgresql://user@host:5432/dbname"


@dataclass(frozen=True)
class StoreLocation:
    """Where a results store lives.

    ``target`` is what the driver is given (a file path, ``":memory:"``, or the URL libpq reads);
    ``shown`` is what messages print: the path, or the URL with its password hidden.
    """

    backend: Backend
    target: str
    shown: str

    @property
    def is_file(self) -> bool:
        return self.backend == "sqlite" and self.target != ":memory:"

    def __str__(self) -> str:
        return self.shown


def parse_location(value: str | os.PathLike[str]) -> StoreLocation:
    """``"diffprof.db"`` -> an SQLite location; ``"postgresql://..."`` -> a PostgreSQL one.

    ``sqlite:///abs/path.db`` and ``sqlite://rel.db`` name SQLite files too.

    Raises:
        ConfigError: an empty value, another URL scheme, or a malformed PostgreSQL URL.
    """
    text = os.fspath(value)
    if not text.strip():
        raise ConfigError("db is empty: it names the results store", _FORMS)
    match = _SCHEME.match(text)
    if not match:
        return StoreLocation("sqlite", text, text)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        path = text[match.end() :]
        if not path:
            raise ConfigError(f"store URL {text!r} names no file", "e.g. sqlite:///abs/path/diffprof.db, or just the path")
        return StoreLocation("sqlite", path, path)
    if scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"unsupported store URL {redact(text)!r}: diffprof keeps results in SQLite or PostgreSQL",
            _FORMS,
        )
    return _postgres(text)


def _postgres(text: str) -> StoreLocation:
    parts = urlsplit(text)
    shown = redact(text)
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError as exc:
        raise ConfigError(f"bad port in store URL {shown!r}", "the port is a number, e.g. postgresql://user@host:5432/dbname") from exc
    database = parts.path.lstrip("/")
    if "/" in database:
        raise ConfigError(
            f"store URL {shown!r} names more than a database ({database!r})",
            "the path of a PostgreSQL URL is one database name, e.g. postgresql://user@host/diffprof",
        )
    if parts.fragment:
        raise ConfigError(f"store URL {shown!r} has a '#' part PostgreSQL does not read", "drop what follows '#'")
    return StoreLocation("postgresql", text, shown)


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (messages, logs and reports never show it)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def location_value(name: str, value: str) -> str:
    """The ``db`` field's check (:class:`~diffprof.config.spec.Spec`): a path or a store URL."""
    parse_location(value)
    return value
