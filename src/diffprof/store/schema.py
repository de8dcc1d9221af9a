"""The store's tables, its schema version, and the migrations between versions.

The version lives in the ``meta`` table (``schema_version``). Opening a database runs
:func:`ensure_schema` inside one schema transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an
advisory lock), so several processes opening a fresh store at once create the tables exactly once,
and an older database is migrated step by step (each step in :data:`MIGRATIONS` takes version
``n`` to ``n + 1``). A database written by a newer diffprof is refused rather than guessed at: its
tables may mean something this version does not know.

One schema, two backends: a migration is written once, in SQLite's dialect, against the
:class:`~diffprof.store.connection.Connection` it is given, and runs unchanged on PostgreSQL (the
connection rewrites placeholders and column types; see :mod:`.connection`). So a migration uses
plain SQL and Python only: no ``PRAGMA``, no ``sqlite_master``, no SQLite-only functions.

Layout: one row per run (``uid``: its identity across stores, which ``push``/``pull`` match on);
one row per cell (``UNIQUE(run_id, cell_key)``, so a retried cell replaces its earlier attempt);
metrics, raw samples, per-round values and artifacts in their own tables keyed by cell
(:data:`CELL_TABLES`), deleted with it (``ON DELETE CASCADE``).

Versions: 1 the first layout; 2 adds ``runs.started`` (the owner's process start time); 3 adds
``rounds`` (a cell's per-round metric values, one JSON list per metric, as ``samples`` holds
per-call ones), ``runs.machine`` (the host's state while the run measured, JSON) and an index on
``cells.cell_key`` (earlier runs of a cell, for noise floors); 4 adds ``runs.uid``. An older store
gains them empty: its runs read as measured in one round, machine and start time not recorded, uids
derived from what identifies each run (:func:`legacy_uid`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from diffprof import __version__
from diffprof.errors import StoreError
from diffprof.store.connection import Connection

#: The version this diffprof writes; bump it and append a step to :data:`MIGRATIONS` together.
SCHEMA_VERSION = 4
#: Tables of rows that belong to one cell (a ``cell_id`` column): what copying a run copies with
#: each cell. A migration that adds such a table appends it here.
CELL_TABLES: tuple[str, ...] = ("metrics", "samples", "rounds", "artifacts")

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

Migration = Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


def _owner_start_time(conn: Connection) -> None:
    """v2: ``runs.started``, the start time of the process measuring the run (with host and pid it
    tells a live owner from a reused pid; :mod:`diffprof.store.owner`). Older runs keep NULL."""
    conn.execute("ALTER TABLE runs ADD COLUMN started REAL")


def _rounds_and_machine(conn: Connection) -> None:
    """v3: per-round metric values (``rounds``), the machine state of a run (``runs.machine``) and an
    index on ``cell_key`` for the history of a cell across runs."""
    conn.execute(
        'CREATE TABLE IF NOT EXISTS rounds (cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE, '
        'name TEXT NOT NULL, "values" TEXT NOT NULL, PRIMARY KEY (cell_id, name))'
    )
    conn.execute("ALTER TABLE runs ADD COLUMN machine TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS cells_key ON cells(cell_key)")


#: Namespace of the uids given to runs stored before runs had one (see :func:`legacy_uid`).
LEGACY_UID_NAMESPACE = uuid.UUID("5d0c6e0e-4a53-4b7e-9d0f-64696666700a")


def new_uid() -> str:
    """A new run's uid: random, so two machines never make the same one."""
    return str(uuid.uuid4())


def legacy_uid(created_at: str, host: str | None, pid: int | None, command: str) -> str:
    """The uid of a run stored before uids existed, derived from what identifies it (when and where
    it started, and what it ran): two copies of one old file get the same uids, so pushing both
    still stores each run once."""
    return str(uuid.uuid5(LEGACY_UID_NAMESPACE, f"{created_at}|{host}|{pid}|{command}"))


def _run_uids(conn: Connection) -> None:
    """v4: ``runs.uid``, a run's identity across stores (``push``/``pull`` copy runs by it; integer
    ids differ between stores). Existing runs get :func:`legacy_uid`."""
    conn.execute("ALTER TABLE runs ADD COLUMN uid TEXT")
    rows = conn.execute("SELECT id, created_at, host, pid, command FROM runs").fetchall()
    conn.executemany("UPDATE runs SET uid = ? WHERE id = ?", [(legacy_uid(c, h, p, cmd), rid) for rid, c, h, p, cmd in rows])
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_uid ON runs(uid)")


#: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1`` (0 = empty database).
MIGRATIONS: dict[int, Migration] = {0: _create_v1, 1: _owner_start_time, 2: _rounds_and_machine, 3: _run_uids}


def read_version(conn: Connection) -> int | None:
    """The stored schema version; 0 for an empty database, None for someone else's database."""
    tables = conn.tables()
    if not tables:
        return 0
    if "meta" not in tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def ensure_schema(conn: Connection, where: str, target: int | None = None) -> int:
    """Create or migrate the tables up to ``target``; return the version found before.

    A store already at ``target`` is only read, so opening one never waits for another process's
    write; creating or migrating happens in one schema transaction that re-reads the version
    first, so concurrent openers of a fresh store serialise on it and the tables are created once.
    A migration that fails rolls back whole (both databases have transactional DDL).
    """
    target = SCHEMA_VERSION if target is None else target
    found = _checked(read_version(conn), where, target, conn.backend)
    if found == target:
        return found
    conn.begin_schema()
    try:
        found = _checked(read_version(conn), where, target, conn.backend)
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for version in range(found, target):
            MIGRATIONS[version](conn)
        if found < target:
            for key, value in (("schema_version", str(target)), ("written_by", f"diffprof {__version__}")):
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return found


def integrity_problems(conn: Connection) -> list[str]:
    """What is wrong with a store's rows; empty when it is sound: the database's own checks, then
    rows no run or cell owns, a run key stored twice, runs without a uid."""
    problems = conn.engine_problems()
    orphans = [("cells", "run_id", "runs")] + [(table, "cell_id", "cells") for table in CELL_TABLES]
    for table, column, parent in orphans:
        (count,) = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} NOT IN (SELECT id FROM {parent})").fetchone()
        if count:
            problems.append(f"{count} {table} row(s) belong to no {parent[:-1]}")
    (twice,) = conn.execute("SELECT COUNT(*) FROM (SELECT run_id, cell_key FROM cells GROUP BY run_id, cell_key HAVING COUNT(*) > 1) d").fetchone()
    if twice:
        problems.append(f"{twice} cell key(s) stored twice in one run")
    (no_uid,) = conn.execute("SELECT COUNT(*) FROM runs WHERE uid IS NULL").fetchone()
    if no_uid:
        problems.append(f"{no_uid} run(s) without a uid")
    return problems


def _checked(found: int | None, where: str, target: int, backend: str) -> int:
    """Refuse databases this diffprof cannot read: someone else's, or a newer diffprof's."""
    if found is None:
        raise StoreError(
            f"{where} is {'a PostgreSQL' if backend == 'postgresql' else 'an SQLite'} database but not a diffprof results store (no schema version)",
            "pass another --db path; diffprof creates a new store there"
            + ("" if backend != "postgresql" else " (or give diffprof a schema of its own: ...?options=-csearch_path%3Ddiffprof)"),
        )
    if found > target:
        raise StoreError(
            f"{where} was written by a newer diffprof (store schema {found}; this diffprof "
            f"{__version__} reads up to {target})",
            "upgrade diffprof (pip install -U diffprof) or use another --db path",
        )
    return found
