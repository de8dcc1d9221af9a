"""The store's tables, its schema version, and the migrations between versions.

The version lives in the ``meta`` table (``schema_version``). Opening a database runs
:func:`ensure_schema` inside one ``BEGIN IMMEDIATE`` transaction, so several processes opening a
fresh file at once create the tables exactly once, and an older database is migrated step by step
(each step in :data:`MIGRATIONS` takes version ``n`` to ``n + 1``). A database written by a newer
diffprof is refused rather than guessed at: its tables may mean something this version does not
know.

Layout: one row per run; one row per cell (``UNIQUE(run_id, cell_key)``, so a retried cell
replaces its earlier attempt); metrics, raw samples, per-round values and artifacts in their own
tables keyed by cell, deleted with it (``ON DELETE CASCADE``).

Versions: 1 the first layout; 2 adds ``rounds`` (a cell's per-round metric values, one JSON list per
metric, as ``samples`` holds per-call ones), ``runs.machine`` (the host's state while the run
measured, JSON) and an index on ``cells.cell_key`` (earlier runs of a cell, for noise floors).
A version-1 store gains them empty: its runs read as measured in one round, machine not recorded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from diffprof import __version__
from diffprof.errors import StoreError

#: The version this diffprof writes; bump it and append a step to :data:`MIGRATIONS` together.
SCHEMA_VERSION = 3

_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    command     TEXT NOT NULL,
    config      TEXT NOT NULL,
    environment TEXT NOT NULL,
    name        TEXT,
    host        TEXT,
    pid         INTEGER
);
CREATE INDEX IF NOT EXISTS runs_name ON runs(name);

CREATE TABLE IF NOT EXISTS cells (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    cell_key    TEXT NOT NULL,
    suite       TEXT NOT NULL,
    labels      TEXT NOT NULL,
    settings    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error       TEXT,
    started_at  TEXT,
    finished_at TEXT,
    UNIQUE (run_id, cell_key)
);

CREATE TABLE IF NOT EXISTS metrics (
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    value   REAL,
    PRIMARY KEY (cell_id, name)
);

CREATE TABLE IF NOT EXISTS samples (
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    "values" TEXT NOT NULL,
    PRIMARY KEY (cell_id, name)
);

CREATE TABLE IF NOT EXISTS artifacts (
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (cell_id, name)
);
"""

Migration = Callable[[sqlite3.Connection], None]


def _create_v1(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


def _owner_start_time(conn: sqlite3.Connection) -> None:
    """v2: ``runs.started``, the start time of the process measuring the run (with host and pid it
    tells a live owner from a reused pid; :mod:`diffprof.store.owner`). Older runs keep NULL."""
    conn.execute("ALTER TABLE runs ADD COLUMN started REAL")


def _rounds_and_machine(conn: sqlite3.Connection) -> None:
    """v3: per-round metric values (``rounds``), the machine state of a run (``runs.machine``) and an
    index on ``cell_key`` for the history of a cell across runs."""
    conn.execute(
        'CREATE TABLE IF NOT EXISTS rounds (cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE, '
        'name TEXT NOT NULL, "values" TEXT NOT NULL, PRIMARY KEY (cell_id, name))'
    )
    conn.execute("ALTER TABLE runs ADD COLUMN machine TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS cells_key ON cells(cell_key)")


#: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1`` (0 = empty file).
MIGRATIONS: dict[int, Migration] = {0: _create_v1, 1: _owner_start_time, 2: _rounds_and_machine}


def read_version(conn: sqlite3.Connection) -> int | None:
    """The stored schema version; 0 for an empty database, None for someone else's SQLite file."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return 0
    if "meta" not in tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def ensure_schema(conn: sqlite3.Connection, where: str, target: int | None = None) -> int:
    """Create or migrate the tables up to ``target``; return the version found before.

    ``conn`` must be in autocommit mode (``isolation_level=None``). A store already at ``target``
    is only read, so opening one never waits for another process's write; creating or migrating
    happens in one immediate transaction that re-reads the version first, so concurrent openers
    of a fresh file serialise on it and the tables are created once.
    """
    target = SCHEMA_VERSION if target is None else target
    found = _checked(read_version(conn), where, target)
    if found == target:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _checked(read_version(conn), where, target)
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for version in range(found, target):
            MIGRATIONS[version](conn)
        if found < target:
            for key, value in (("schema_version", str(target)), ("written_by", f"diffprof {__version__}")):
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def _checked(found: int | None, where: str, target: int) -> int:
    """Refuse databases this diffprof cannot read: someone else's, or a newer diffprof's."""
    if found is None:
        raise StoreError(
            f"{where} is an SQLite database but not a diffprof results store (no schema version)",
            "pass another --db path; diffprof creates a new store there",
        )
    if found > target:
        raise StoreError(
            f"{where} was written by a newer diffprof (store schema {found}; this diffprof "
            f"{__version__} reads up to {target})",
            "upgrade diffprof (pip install -U diffprof) or use another --db path",
        )
    return found
