"""Copying runs between stores (``diffprof push`` / ``pull``): SQLite or PostgreSQL, either way.

A run is identified by its ``uid`` (integer ids differ between stores), and a cell within it by its
``cell_key``, so a copy is idempotent: a run copied twice exists once, and copying it again after it
gained cells (a resume finished it) adds those and updates its status. A cell whose key is already
there with the same status and finish time is left alone; one that differs (a failed cell retried
since) replaces the earlier attempt, as :meth:`~diffprof.store.Store.add_cell` does.

Rows are copied column by column as stored (both stores are at the same schema version once open),
so whatever a migration adds to ``runs``, ``cells`` or a table of :data:`~.schema.CELL_TABLES`
travels without this module changing: the per-round values (``rounds``), the machine state
(``runs.machine``) and the owner's start time (``runs.started``) among them. The whole run is one write transaction in the destination:
it is there completely or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from diffprof.store.connection import Connection
from diffprof.store.owner import Owner
from diffprof.store.rows import effective_status
from diffprof.store.schema import CELL_TABLES

#: Columns that are a row's place in its own store, not part of what it says.
_LOCAL = {"id", "rowid", "run_id", "cell_id"}


@dataclass(frozen=True)
class Copied:
    """What copying one run did: where it came from and went, and how many cells moved."""

    uid: str
    source_id: int
    dest_id: int
    #: The run was new in the destination (False: it was there and was brought up to date).
    created: bool
    copied: int
    unchanged: int

    def describe(self, source: str, dest: str) -> str:
        """``run 3 of a.db -> run 12 of postgresql://ci@db/x: 4 cells copied``, or that it was there."""
        if not self.created and not self.copied:
            return f"run {self.source_id} of {source} is already run {self.dest_id} of {dest}: nothing to copy ({self.unchanged} cells)"
        what = f"{self.copied} cell{'s' if self.copied != 1 else ''} copied"
        if self.unchanged:
            what += f", {self.unchanged} already there"
        there = "" if self.created else " (there before)"
        return f"run {self.source_id} of {source} -> run {self.dest_id} of {dest}{there}: {what}"


CellRows = tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]


@dataclass
class RunRows:
    """One run as stored: its row and, per cell, the cell's row and the rows of each cell table
    (read one cell at a time while they are written: a run's artifacts need not fit in memory)."""

    run: dict[str, Any]
    cells: Iterator[CellRows]


def read_run_rows(conn: Connection, rid: int) -> RunRows:
    """Run ``rid``'s rows (iterate them inside the read snapshot). A ``running`` run whose owner is
    gone (its pid ended, or now belongs to a process started at another time) is copied as
    ``interrupted``, which is what it is: another host cannot check its process."""
    (run,) = conn.dicts("SELECT * FROM runs WHERE id = ?", (rid,))
    run["status"] = effective_status(run["status"], Owner(run.get("host"), run.get("pid"), run.get("started")))
    return RunRows(run=_own(run), cells=_cells(conn, rid))


def _cells(conn: Connection, rid: int) -> Iterator[CellRows]:
    for cell in conn.dicts("SELECT * FROM cells WHERE run_id = ? ORDER BY id", (rid,)):
        children = {table: [_own(r) for r in conn.dicts(f"SELECT * FROM {table} WHERE cell_id = ? ORDER BY rowid", (cell["id"],))] for table in CELL_TABLES}
        yield _own(cell), children


def write_run_rows(conn: Connection, rows: RunRows, source_id: int) -> Copied:
    """Merge ``rows`` into the store of ``conn`` (call inside a write transaction)."""
    uid = rows.run["uid"]
    found = conn.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()
    if found is None:
        dest = conn.insert(*_insert("runs", rows.run))
        have: dict[str, tuple[Any, Any]] = {}
    else:
        dest = int(found[0])
        conn.lock_run(dest)
        fields = {k: v for k, v in rows.run.items() if k != "uid"}
        conn.execute(f"UPDATE runs SET {', '.join(f'{_q(k)} = ?' for k in fields)} WHERE id = ?", (*fields.values(), dest))
        have = {key: (status, finished) for key, status, finished in conn.execute(
            "SELECT cell_key, status, finished_at FROM cells WHERE run_id = ?", (dest,))}
    copied = unchanged = 0
    for cell, children in rows.cells:
        key = cell["cell_key"]
        if have.get(key) == (cell["status"], cell["finished_at"]):
            unchanged += 1
            continue
        if key in have:
            conn.execute("DELETE FROM cells WHERE run_id = ? AND cell_key = ?", (dest, key))
        cid = conn.insert(*_insert("cells", {"run_id": dest, **cell}))
        for table, table_rows in children.items():
            for row in table_rows:
                conn.execute(*_insert(table, {"cell_id": cid, **row}))
        copied += 1
    return Copied(uid=uid, source_id=source_id, dest_id=dest, created=found is None, copied=copied, unchanged=unchanged)


def _own(row: dict[str, Any]) -> dict[str, Any]:
    """A row without the columns that only place it in its store; BLOB/BYTEA values as bytes."""
    return {k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in row.items() if k not in _LOCAL}


def _insert(table: str, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    names = ", ".join(_q(k) for k in row)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())


def _q(name: str) -> str:
    """A column name quoted for both databases (``values`` is a keyword in PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'
