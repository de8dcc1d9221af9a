"""The results store: runs and their cells in one SQLite file.

Why SQLite: one file that survives crashes, is safe for several writers, and needs no server.
How it is used safely:

- WAL journal and ``synchronous=FULL``: readers never block the writer, and a committed cell is on
  disk before :meth:`Store.add_cell` returns, so a killed process (or a power cut) loses nothing that
  finished.
- Every write is one ``BEGIN IMMEDIATE`` transaction, and ``busy_timeout`` makes a second writer
  wait for the first instead of failing with "database is locked" (a deferred transaction that
  upgrades from read to write could fail without waiting; an immediate one cannot).
- One connection per :class:`Store`, in autocommit mode, so transactions are exactly where the code
  says; use one Store per process (or thread).

Resume contract: :meth:`Store.finished_keys` returns the keys of cells that finished **ok**. Failed
cells are retried on resume (a failure is often transient: out of memory beside another job, a
driver hiccup), and :meth:`Store.add_cell` replaces the earlier attempt, so every cell is stored
exactly once, in its latest state.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from diffprof.errors import StoreError
from diffprof.results import CellResult, RunInfo
from diffprof.store import schema
from diffprof.store.refs import RunRefLike, resolve_ref

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Where ``diffprof`` keeps results unless ``--db`` says otherwise.
DEFAULT_PATH = "diffprof.db"

RunStatus = Literal["running", "finished", "failed", "interrupted"]
#: Statuses a run can end in (``finish_run``).
FINAL_STATUSES: tuple[RunStatus, ...] = ("finished", "failed", "interrupted")

_RUN_COLUMNS = "id, created_at, finished_at, status, command, config, environment, name, host, pid"


def now_iso() -> str:
    """UTC time stamp with an explicit offset: sortable and unambiguous across machines."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """Benchmark runs and cells in an SQLite file (created on first use).

    Args:
        path (`str` or `Path`, defaults to ``"diffprof.db"``): the database file; ``":memory:"``
            gives a private in-memory store (tests, one-off scripts).
        timeout (`float`, defaults to 60): seconds a write waits for another process's write before
            giving up; cells are written in milliseconds, so waiting this long means something hangs.

    Use as a context manager (``with Store(path) as store:``) or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, timeout: float = 60.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._conn = self._open(timeout)

    # ------------------------------------------------------------------ opening
    def _open(self, timeout: float) -> sqlite3.Connection:
        in_memory = self.path == ":memory:"
        if not in_memory:
            target = Path(self.path)
            if target.is_dir():
                raise StoreError(f"{target} is a directory, not a results store", f"pass a file path such as {target / DEFAULT_PATH}")
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}", "check the path and its permissions") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if not in_memory:
                _switch_to_wal(conn, timeout)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            schema.ensure_schema(conn, self.path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "locked" in str(exc):
                raise self._locked_error() from exc
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(
                    f"{self.path} is not a diffprof results store (not an SQLite database: {exc})",
                    "pass another --db path, or move this file away",
                ) from exc
            raise StoreError(f"cannot open results store {self.path}: {exc}", "check the path and its permissions") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close the connection; committed data is already on disk."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the ``meta`` table."""
        version = schema.read_version(self._conn)
        assert version is not None  # ensure_schema refused anything else
        return version

    def _locked_error(self) -> StoreError:
        return StoreError(
            f"{self.path} stayed locked by another process for more than {self.timeout:g} s",
            "another diffprof (or a database browser) is holding a write open; close it, or pass a larger timeout",
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: all of it is committed, or none of it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise self._locked_error() from exc
            raise
        try:
            yield self._conn
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ runs
    def resolve(self, ref: RunRefLike) -> int:
        """The id of the run ``ref`` names: an id, ``latest``, ``latest~N`` or a run name.

        Raises:
            StoreError: no such run; the message lists the ids that exist.
        """
        return resolve_ref(self._conn, ref, self.path)

    def create_run(self, command: str, config: dict[str, Any], environment: dict[str, Any], name: str | None = None) -> int:
        """Record a new run (status ``running``) and return its id.

        Args:
            command (`str`): the command line that started it, so the run can be repeated.
            config (`dict`): the effective configuration (JSON-serialisable; other values are
                stored as their ``str``).
            environment (`dict`): :func:`diffprof.environment.capture_environment` output.
            name (`str`, *optional*): a label that run references accept (``--name baseline``).
        """
        if name is not None and (not name.strip() or name.strip().isdigit() or name.startswith("latest")):
            raise StoreError(
                f"bad run name {name!r}: names must not be empty, all digits, or start with 'latest'",
                "those read as run ids or latest~N; pick a word such as 'baseline'",
            )
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (created_at, status, command, config, environment, name, host, pid) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
                (now_iso(), command, _dumps(config), _dumps(environment), name, socket.gethostname(), os.getpid()),
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: RunRefLike, status: RunStatus = "finished") -> None:
        """Mark a run ``finished``, ``failed`` (the run itself broke) or ``interrupted`` (Ctrl-C)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish_run status must be one of {FINAL_STATUSES}, not {status!r}")
        rid = self.resolve(run_id)
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now_iso(), rid))

    def resume_run(self, ref: RunRefLike) -> int:
        """Mark a run ``running`` again (owned by this process) and return its id.

        Pair with :meth:`finished_keys` to skip what is done and :meth:`add_cell` for the rest.
        """
        rid = self.resolve(ref)
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, host = ?, pid = ? WHERE id = ?",
                (socket.gethostname(), os.getpid(), rid),
            )
        return rid

    def delete_run(self, ref: RunRefLike) -> int:
        """Delete a run with its cells, metrics, samples and artifacts; return its id."""
        rid = self.resolve(ref)
        with self._write() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (rid,))
        return rid

    def list_runs(self, limit: int | None = 20) -> list[RunInfo]:
        """The newest ``limit`` runs (all when None), newest first, without cells.

        Each run's ``counts`` says how many cells are ``ok`` and ``failed``.
        """
        sql = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        runs = [self._run_from_row(row) for row in self._conn.execute(sql, params)]
        if runs:
            marks = ",".join("?" * len(runs))
            counts = self._conn.execute(
                f"SELECT run_id, status, COUNT(*) FROM cells WHERE run_id IN ({marks}) GROUP BY run_id, status",
                [r.id for r in runs],
            )
            by_id = {r.id: r for r in runs}
            for run_id, status, count in counts:
                by_id[run_id].counts[status] = int(count)
        return runs

    def get_run(self, ref: RunRefLike, artifacts: bool = False) -> RunInfo:
        """One run with all its cells (metrics and samples; artifacts only when asked).

        Args:
            ref: a run id, ``latest``, ``latest~N`` or a run name.
            artifacts (`bool`, defaults to False): also load artifact bytes (images, timelines);
                without it ``cell.artifacts`` is empty and :meth:`artifact` fetches one on demand.
        """
        rid = self.resolve(ref)
        row = self._conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (rid,)).fetchone()
        run = self._run_from_row(row)
        cells: dict[int, CellResult] = {}
        for cid, suite, labels, settings, status, error, started, finished, key in self._conn.execute(
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
            run.counts[status] = run.counts.get(status, 0) + 1
        for cid, name, value in self._conn.execute(
            "SELECT m.cell_id, m.name, m.value FROM metrics m JOIN cells c ON c.id = m.cell_id "
            "WHERE c.run_id = ? ORDER BY m.rowid",
            (rid,),
        ):
            cells[cid].metrics[name] = math.nan if value is None else float(value)
        for cid, name, values in self._conn.execute(
            'SELECT s.cell_id, s.name, s."values" FROM samples s JOIN cells c ON c.id = s.cell_id '
            "WHERE c.run_id = ? ORDER BY s.rowid",
            (rid,),
        ):
            cells[cid].samples[name] = [float(v) for v in json.loads(values)]
        if artifacts:
            for cid, name, data in self._conn.execute(
                "SELECT a.cell_id, a.name, a.data FROM artifacts a JOIN cells c ON c.id = a.cell_id "
                "WHERE c.run_id = ? ORDER BY a.rowid",
                (rid,),
            ):
                cells[cid].artifacts[name] = bytes(data)
        run.cells = list(cells.values())
        return run

    def _run_from_row(self, row: tuple[Any, ...]) -> RunInfo:
        rid, created, finished, status, command, config, environment, name, host, pid = row
        return RunInfo(
            id=int(rid),
            created_at=created,
            finished_at=finished,
            status=_effective_status(status, host, pid),
            command=command,
            config=json.loads(config),
            environment=json.loads(environment),
            name=name,
        )

    # ------------------------------------------------------------------ cells
    def add_cell(self, run_id: RunRefLike, cell: CellResult) -> int:
        """Store a finished cell in its own transaction and return its id.

        Committed (and synced) before returning, so a crash afterwards cannot lose it. A cell whose
        key is already in the run replaces the earlier attempt, with its metrics, samples and
        artifacts. An empty ``finished_at`` is stamped with the current time.
        """
        if cell.status not in ("ok", "failed"):
            raise ValueError(f"cell status must be 'ok' or 'failed', not {cell.status!r}")
        rid = self.resolve(run_id)
        key = cell.key
        with self._write() as conn:
            conn.execute("DELETE FROM cells WHERE run_id = ? AND cell_key = ?", (rid, key))
            cursor = conn.execute(
                "INSERT INTO cells (run_id, cell_key, suite, labels, settings, status, error, started_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    key,
                    cell.suite,
                    _dumps(cell.labels),
                    _dumps(cell.settings),
                    cell.status,
                    cell.error,
                    cell.started_at or None,
                    cell.finished_at or now_iso(),
                ),
            )
            cid = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO metrics (cell_id, name, value) VALUES (?, ?, ?)",
                [(cid, name, _real(value)) for name, value in cell.metrics.items()],
            )
            conn.executemany(
                'INSERT INTO samples (cell_id, name, "values") VALUES (?, ?, ?)',
                [(cid, name, json.dumps([float(v) for v in values])) for name, values in cell.samples.items()],
            )
            conn.executemany(
                "INSERT INTO artifacts (cell_id, name, data) VALUES (?, ?, ?)",
                [(cid, name, sqlite3.Binary(bytes(data))) for name, data in cell.artifacts.items()],
            )
        return cid

    def finished_keys(self, run_id: RunRefLike) -> set[str]:
        """Keys of the run's cells that finished ``ok``: what a resume skips.

        Failed cells are left out on purpose, so a resume retries them.
        """
        rid = self.resolve(run_id)
        return {row[0] for row in self._conn.execute("SELECT cell_key FROM cells WHERE run_id = ? AND status = 'ok'", (rid,))}

    def artifact(self, cell_id: int, name: str) -> bytes:
        """One artifact of a cell (e.g. ``image.png``), fetched on demand."""
        row = self._conn.execute("SELECT data FROM artifacts WHERE cell_id = ? AND name = ?", (cell_id, name)).fetchone()
        if row is None:
            names = self.artifact_names(cell_id)
            raise StoreError(
                f"cell {cell_id} has no artifact {name!r}",
                f"it has: {', '.join(names)}" if names else "it stored no artifacts",
            )
        return bytes(row[0])

    def artifact_names(self, cell_id: int) -> list[str]:
        """Names of a cell's artifacts, without loading their bytes."""
        return [r[0] for r in self._conn.execute("SELECT name FROM artifacts WHERE cell_id = ? ORDER BY rowid", (cell_id,))]

    # ------------------------------------------------------------------ analysis
    def cells_frame(self, ref: RunRefLike) -> pd.DataFrame:
        """One row per cell of a run, for pandas analysis: :func:`diffprof.analysis.frame.cells_frame`
        of :meth:`get_run` (the same frame ``report.run_frame`` gives and the CSV report writes).

        Raises:
            DiffprofError: pandas is not installed.
        """
        from diffprof.analysis.frame import cells_frame

        return cells_frame(self.get_run(ref))


def _dumps(value: Any) -> str:
    """JSON text; values JSON cannot hold (paths, dtypes) are kept as their ``str``."""
    return json.dumps(value, default=str)


def _real(value: Any) -> float | None:
    """SQLite stores NaN as NULL; say so explicitly (read back as NaN)."""
    number = float(value)
    return None if math.isnan(number) else number


def _effective_status(status: str, host: str | None, pid: int | None) -> str:
    """``running`` runs whose process is gone from this host are shown as ``interrupted``.

    A process killed outright (SIGKILL, out-of-memory killer, power loss) never marks its run;
    without this check it would read "running" forever. Runs started on other hosts are shown as
    stored: their processes cannot be checked from here.
    """
    if status != "running" or pid is None or host != socket.gethostname() or os.name == "nt":
        return status  # (on Windows os.kill(pid, 0) would terminate the process)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return "interrupted"
    except OSError:  # PermissionError: alive, owned by someone else
        return status
    return status


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
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
