"""The embedded backend: opening a store's SQLite file safely, and SQLite's side of the dialect.

Why these settings (the reasons :class:`~.store.Store` relies on):

- WAL journal and ``synchronous=FULL``: readers never block the writer, and a committed cell is on
  disk before the write returns, so a killed process (or a power cut) loses nothing that finished.
- ``busy_timeout``: a second writer waits for the first instead of failing with "database is
  locked"; every write is ``BEGIN IMMEDIATE`` (a deferred transaction that upgrades from read to
  write could fail without waiting; an immediate one cannot).
- Autocommit mode (``isolation_level=None``): transactions are exactly where the store's code
  says.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from diffprof.config.location import StoreLocation
from diffprof.errors import StoreError
from diffprof.store.connection import Connection, Params, missing_store


class SQLiteConnection(Connection):
    backend = "sqlite"

    def insert(self, sql: str, params: Params) -> int:
        return int(self.raw.execute(sql, tuple(params)).lastrowid or 0)

    def tables(self) -> set[str]:
        return {row[0] for row in self.raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def begin_write(self) -> None:
        try:
            self.raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise self.locked_error() from exc
            raise

    def begin_read(self) -> None:
        self.raw.execute("BEGIN")  # deferred: the first read fixes the WAL snapshot

    def begin_schema(self) -> None:
        self.begin_write()

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.in_transaction)

    def engine_problems(self) -> list[str]:
        """``PRAGMA integrity_check`` (pages, indexes) and ``foreign_key_check``."""
        problems = [row[0] for row in self.raw.execute("PRAGMA integrity_check") if row[0] != "ok"]
        for table, rowid, parent, _ in self.raw.execute("PRAGMA foreign_key_check"):
            problems.append(f"{table} row {rowid} refers to a missing {parent} row")
        return problems

    def translate(self, exc: BaseException) -> StoreError | None:
        if not isinstance(exc, sqlite3.DatabaseError):
            return None
        text = str(exc)
        if "locked" in text or "busy" in text:
            return self.locked_error()
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"{self.where} is not a diffprof results store (not an SQLite database: {exc})",
                "pass another --db path, or move this file away",
            )
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(f"cannot open results store {self.where}: {exc}", "check the path and its permissions")
        return None


def open_sqlite(location: StoreLocation, timeout: float, *, create: bool = True, default_name: str = "diffprof.db") -> SQLiteConnection:
    """An autocommit connection to the SQLite store at ``location`` (``":memory:"``: a private
    one), with WAL, full sync and foreign keys; errors say what the file is and what to do."""
    path = location.target
    if location.is_file:
        target = Path(path)
        if target.is_dir():
            raise StoreError(f"{target} is a directory, not a results store", f"pass a file path such as {target / default_name}")
        if not create and not target.exists():
            raise missing_store(path)
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        raw = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open results store {path}: {exc}", "check the path and its permissions") from exc
    conn = SQLiteConnection(raw, location, timeout)
    try:
        raw.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if location.is_file:
            switch_to_wal(raw, timeout)
        raw.execute("PRAGMA synchronous = FULL")
        raw.execute("PRAGMA foreign_keys = ON")
    except BaseException as exc:
        raw.close()
        error = conn.translate(exc)
        if error is not None:
            raise error from exc
        raise
    return conn


def switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while other openers hold the file.

    Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once, without its busy handler, when another connection is mid-open; so several processes
    creating one store at the same moment retry here, with jitter, up to ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.2)
