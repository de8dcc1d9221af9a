"""One connection contract over SQLite and PostgreSQL, so the store's SQL is written once.

The store's statements, tables and migrations are written in one dialect, SQLite's: ``?``
placeholders, ``INTEGER PRIMARY KEY AUTOINCREMENT``, ``REAL``, ``BLOB``, ``ORDER BY rowid``,
``INSERT ... ON CONFLICT ... DO UPDATE`` (both databases read that upsert as it is). A
:class:`Connection` carries the few differences ("the dialect"):

=====================  ======================================  ==========================================
                       SQLite (:mod:`.sqlite`)                 PostgreSQL (:mod:`.postgres`)
=====================  ======================================  ==========================================
placeholders           ``?``                                   ``?`` rewritten to ``%s``
new row's id           ``cursor.lastrowid``                    ``... RETURNING id``
write transaction      ``BEGIN IMMEDIATE`` (one writer)        ``BEGIN`` + row lock on the run written
read snapshot          ``BEGIN`` (WAL snapshot)                ``REPEATABLE READ READ ONLY``
schema transaction     ``BEGIN IMMEDIATE``                     ``BEGIN`` + advisory lock
types in DDL           as written                              ``REAL`` -> ``DOUBLE PRECISION``, ``BLOB``
                                                               -> ``BYTEA``, autoincrement -> identity,
                                                               a ``rowid`` column where SQLite has one
waiting for a writer   ``busy_timeout``                        ``lock_timeout``
=====================  ======================================  ==========================================

Connections are in autocommit mode: transactions are exactly where the store's code says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from diffprof.config.location import StoreLocation, parse_location
from diffprof.errors import StoreError

Params = Sequence[Any]


class Connection:
    """A store connection: the DB-API calls the store makes, with the dialect's differences inside.

    Subclasses wrap one driver connection (``raw``) and implement the ``begin_*`` methods,
    :meth:`insert`, :meth:`tables` and the error translation.
    """

    backend: ClassVar[str]

    def __init__(self, raw: Any, location: StoreLocation, timeout: float) -> None:
        self.raw = raw
        self.location = location
        self.where = location.shown
        self.timeout = timeout

    # ------------------------------------------------------------- statements
    def execute(self, sql: str, params: Params = ()) -> Any:
        """Run one statement; the cursor iterates rows as tuples (``fetchone``, ``fetchall``)."""
        return self.raw.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self.raw.executemany(sql, rows)

    def insert(self, sql: str, params: Params) -> int:  # pragma: no cover - every backend overrides
        """Run an ``INSERT`` into a table with an ``id`` column and return the new row's id."""
        raise NotImplementedError

    def dicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """The rows of a ``SELECT`` as ``{column: value}`` (column names from the cursor)."""
        cursor = self.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def tables(self) -> set[str]:  # pragma: no cover
        """Names of the tables in the database (in PostgreSQL: in the current schema)."""
        raise NotImplementedError

    # ----------------------------------------------------------- transactions
    def begin_write(self) -> None:  # pragma: no cover
        """Start a write transaction, waiting up to ``timeout`` for another writer."""
        raise NotImplementedError

    def begin_read(self) -> None:  # pragma: no cover
        """Start a read-only transaction that sees one snapshot of the store."""
        raise NotImplementedError

    def begin_schema(self) -> None:  # pragma: no cover
        """Start the transaction that creates or migrates the tables; openers of one store serialise on it."""
        raise NotImplementedError

    def lock_run(self, run_id: int) -> None:
        """Inside a write transaction: keep other writers of run ``run_id`` out until commit (a no-op
        where the write transaction already excludes every other writer)."""

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self.raw.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        self.raw.close()

    def engine_problems(self) -> list[str]:  # pragma: no cover
        """The database's own consistency checks; empty when sound."""
        raise NotImplementedError

    # ----------------------------------------------------------------- errors
    def translate(self, exc: BaseException) -> StoreError | None:
        """The :class:`StoreError` a driver error means to a user (a lock held too long, a lost
        server), or None for errors that are bugs and should surface as they are."""
        return None

    def locked_error(self) -> StoreError:
        return StoreError(
            f"{self.where} stayed locked by another process for more than {self.timeout:g} s",
            "another diffprof (or a database browser) is holding a write open; close it, or pass a larger timeout",
        )


def connect(location: str | StoreLocation, timeout: float, *, create: bool = True, default_name: str = "diffprof.db") -> Connection:
    """A connection to the store at ``location``, its tables created or migrated.

    Args:
        location: a path, ``":memory:"``, a ``postgresql://`` URL, or a parsed location.
        timeout: seconds a write waits for another writer.
        create: make the store when it does not exist (the file, or the PostgreSQL database where
            the role may create one); False raises a :class:`StoreError` instead, for commands
            that only read.
        default_name: the file name a directory path is told to append.
    """
    from diffprof.store import schema

    loc = location if isinstance(location, StoreLocation) else parse_location(location)
    if loc.backend == "postgresql":
        from diffprof.store.postgres import open_postgres

        conn: Connection = open_postgres(loc, timeout, create=create)
    else:
        from diffprof.store.sqlite import open_sqlite

        conn = open_sqlite(loc, timeout, create=create, default_name=default_name)
    try:
        schema.ensure_schema(conn, loc.shown)
    except BaseException as exc:
        error = conn.translate(exc)
        conn.close()
        if error is not None:
            raise error from exc
        raise
    return conn


def missing_store(where: str) -> StoreError:
    """What a reading command says when ``--db`` names nothing yet."""
    return StoreError(f"no results store at {where!r}", "run `diffprof bench` first, or pass --db PATH (or a postgresql:// URL)")
