"""How runs and cells map to the store's rows, both ways (the tables are in :mod:`.schema`).

JSON text for labels, settings, config, environment and machine state; one row per metric (NaN as
NULL), per sample series and per metric's per-round values (JSON lists) and per artifact (a BLOB /
BYTEA). Kept apart from :class:`~.store.Store`, which owns the connection and the transactions:
these functions run inside them, on either backend (:mod:`.connection`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from diffprof.results import CellResult, RunInfo
from diffprof.store.connection import Connection
from diffprof.store.owner import Owner

RUN_COLUMNS = "id, created_at, finished_at, status, command, config, environment, name, host, pid, started, machine, uid"


def now_iso() -> str:
    """UTC time stamp with an explicit offset: sortable and unambiguous across machines."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    """JSON text; values JSON cannot hold (paths, dtypes) are kept as their ``str``."""
    return json.dumps(value, default=str)


def real(value: Any) -> float | None:
    """SQLite stores NaN as NULL; say so explicitly (read back as NaN)."""
    number = float(value)
    return None if math.isnan(number) else number


# ---------------------------------------------------------------------- runs
def run_from_row(row: tuple[Any, ...]) -> RunInfo:
    """A :class:`RunInfo` (without cells) from a ``SELECT RUN_COLUMNS FROM runs`` row."""
    rid, created, finished, status, command, config, environment, name, host, pid, started, machine, uid = row
    return RunInfo(
        id=int(rid),
        created_at=created,
        finished_at=finished,
        status=effective_status(status, Owner(host, pid, started)),
        command=command,
        config=json.loads(config),
        environment=json.loads(environment),
        name=name,
        machine=json.loads(machine) if machine else {},
        uid=uid,
    )


def effective_status(status: str, owner: Owner) -> str:
    """``running`` runs whose process is gone from this host are shown as ``interrupted``.

    A process killed outright (SIGKILL, out-of-memory killer, power loss) never marks its run;
    without this check it would read "running" forever. A pid that now belongs to another process
    (its start time differs) is gone too. Runs started on other hosts are shown as stored: their
    processes cannot be checked from here.
    """
    if status == "running" and owner.alive() is False:
        return "interrupted"
    return status


# ---------------------------------------------------------------------- cells
def insert_cell(conn: Connection, rid: int, cell: CellResult) -> int:
    """Write ``cell`` into run ``rid`` (replacing an earlier attempt of its key, under the same id:
    a later round's merge or a retried failure keeps its place in the run); return its id.

    Call inside a write transaction: the run is locked against other writers of it, and the delete
    and the inserts commit together.
    """
    key = cell.key
    conn.lock_run(rid)
    earlier = conn.execute("SELECT id FROM cells WHERE run_id = ? AND cell_key = ?", (rid, key)).fetchone()
    conn.execute("DELETE FROM cells WHERE run_id = ? AND cell_key = ?", (rid, key))
    row = (
        rid,
        key,
        cell.suite,
        dumps(cell.labels),
        dumps(cell.settings),
        cell.status,
        cell.error,
        cell.started_at or None,
        cell.finished_at or now_iso(),
    )
    columns = "run_id, cell_key, suite, labels, settings, status, error, started_at, finished_at"
    if earlier:  # an explicit id: SQLite's autoincrement and PostgreSQL's identity (BY DEFAULT) both take it
        cid = int(earlier[0])
        conn.execute(f"INSERT INTO cells (id, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (cid, *row))
    else:
        cid = conn.insert(f"INSERT INTO cells ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    conn.executemany(
        "INSERT INTO metrics (cell_id, name, value) VALUES (?, ?, ?)",
        [(cid, name, real(value)) for name, value in cell.metrics.items()],
    )
    conn.executemany(
        'INSERT INTO samples (cell_id, name, "values") VALUES (?, ?, ?)',
        [(cid, name, json.dumps([float(v) for v in values])) for name, values in cell.samples.items()],
    )
    conn.executemany(
        'INSERT INTO rounds (cell_id, name, "values") VALUES (?, ?, ?)',
        [(cid, name, json.dumps([float(v) for v in values])) for name, values in cell.rounds.items()],
    )
    conn.executemany(
        "INSERT INTO artifacts (cell_id, name, data) VALUES (?, ?, ?)",
        [(cid, name, bytes(data)) for name, data in cell.artifacts.items()],
    )
    return cid


def read_cells(conn: Connection, rid: int, artifacts: bool = False) -> list[CellResult]:
    """Run ``rid``'s cells in the order they were stored, with metrics, samples and per-round
    values in theirs (artifact bytes only when asked)."""
    cells: dict[int, CellResult] = {}
    for cid, suite, labels, settings, status, error, started, finished, key in conn.execute(
        "SELECT id, suite, labels, settings, status, error, started_at, finished_at, cell_key FROM cells "
        "WHERE run_id = ? ORDER BY id",
        (rid,),
    ):
        cells[cid] = CellResult(
            suite=suite,
            labels=json.loads(labels),
            settings=json.loads(settings),
            status=status,
            error=error,
            started_at=started or "",
            finished_at=finished or "",
            id=cid,
            cell_key=key,
        )
    for cid, name, value in conn.execute(
        "SELECT m.cell_id, m.name, m.value FROM metrics m JOIN cells c ON c.id = m.cell_id "
        "WHERE c.run_id = ? ORDER BY m.rowid",
        (rid,),
    ):
        cells[cid].metrics[name] = math.nan if value is None else float(value)
    for cid, name, values in conn.execute(
        'SELECT s.cell_id, s.name, s."values" FROM samples s JOIN cells c ON c.id = s.cell_id '
        "WHERE c.run_id = ? ORDER BY s.rowid",
        (rid,),
    ):
        cells[cid].samples[name] = [float(v) for v in json.loads(values)]
    for cid, name, values in conn.execute(
        'SELECT r.cell_id, r.name, r."values" FROM rounds r JOIN cells c ON c.id = r.cell_id '
        "WHERE c.run_id = ? ORDER BY r.rowid",
        (rid,),
    ):
        cells[cid].rounds[name] = [float(v) for v in json.loads(values)]
    if artifacts:
        for cid, name, data in conn.execute(
            "SELECT a.cell_id, a.name, a.data FROM artifacts a JOIN cells c ON c.id = a.cell_id "
            "WHERE c.run_id = ? ORDER BY a.rowid",
            (rid,),
        ):
            cells[cid].artifacts[name] = bytes(data)
    return list(cells.values())
