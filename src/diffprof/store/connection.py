"""Opening a store's SQLite file safely: WAL, full sync, foreign keys, the schema, clear errors.

Why these settings (the reasons :class:`~.store.Store` relies on):

- WAL journal and ``synchronous=FULL``: readers never block the writer, and a committed cell is on
  disk before the write returns, so a killed process (or a power cut) loses nothing that finished.
- ``busy_timeout``: a second writer waits for the first instead of failing with "database is
  locked".
- Autocommit mode (``isolation_level=None``): transactions are exactly where the store's code
  says (``BEGIN IMMEDIATE`` ... ``COMMIT``).
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from diffprof.errors import StoreError
from diffprof.store import schema


def connect(path: str, timeout: float, default_name: str) -> sqlite3.Connection:
    """An autocommit connection to the store at ``path`` (``":memory:"``: a private one), its
    tables created or migrated; errors say what the file is and what to do.

    ``default_name`` is the file name a directory ``path`` is told to append.
    """
    in_memory = path == ":memory:"
    if not in_memory:
        target = Path(path)
        if target.is_dir():
            raise StoreError(f"{target} is a directory, not a results store", f"pass a file path such as {target / default_name}")
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open results store {path}: {exc}", "check the path and its permissions") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if not in_memory:
            switch_to_wal(conn, timeout)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        schema.ensure_schema(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "locked" in str(exc):
            raise locked_error(path, timeout) from exc
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreError(
                f"{path} is not a diffprof results store (not an SQLite database: {exc})",
                "pass another --db path, or move this file away",
            ) from exc
        raise StoreError(f"cannot open results store {path}: {exc}", "check the path and its permissions") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def locked_error(path: str, timeout: float) -> StoreError:
    return StoreError(
        f"{path} stayed locked by another process for more than {timeout:g} s",
        "another diffprof (or a database browser) is holding a write open; close it, or pass a larger timeout",
    )


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
