"""The results store: runs and their cells in an SQLite file or a PostgreSQL database.

Why SQLite by default: one file that survives crashes, is safe for several writers, and needs no
server. Why PostgreSQL beside it (``Store("postgresql://user@host/db")``): one history a team and
its CI runners share, written by many machines at once. Both hold the same tables, versions and
migrations, through one SQL text (:mod:`.connection` carries the few differences). How it is used
safely:

- A committed cell is durable before :meth:`Store.add_cell` returns (SQLite: WAL and
  ``synchronous=FULL``, :mod:`.sqlite`; PostgreSQL: its own WAL), so a killed process (or a power
  cut) loses nothing that finished.
- Every write is one transaction; a second writer waits for the first (up to ``timeout``) instead
  of failing (SQLite: ``BEGIN IMMEDIATE`` and ``busy_timeout``; PostgreSQL: a row lock on the run
  written and ``lock_timeout``, :mod:`.postgres`). Reading a whole run is one snapshot.
- One connection per :class:`Store`, in autocommit mode, so transactions are exactly where the code
  says; use one Store per process (or thread).

Resume contract: :meth:`Store.finished_keys` returns the keys of cells that finished **ok**. Failed
cells are retried on resume (a failure is often transient: out of memory beside another job, a
driver hiccup), and :meth:`Store.add_cell` replaces the earlier attempt, so every cell is stored
exactly once, in its latest state.

Rows are read and written by :mod:`.rows`; the tables and migrations are in :mod:`.schema`;
copying runs between stores (``push``/``pull``) is :mod:`.transfer`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from diffprof.errors import StoreError
from diffprof.results import CellResult, RunInfo
from diffprof.config.location import StoreLocation, parse_location
from diffprof.store import schema
from diffprof.store.connection import Connection, connect
from diffprof.store.owner import Owner
from diffprof.store.refs import RunRefLike, resolve_ref
from diffprof.store.rows import RUN_COLUMNS, dumps, insert_cell, now_iso, read_cells, run_from_row
from diffprof.store.transfer import Copied, read_run_rows, write_run_rows

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Where ``diffprof`` keeps results unless ``--db`` says otherwise.
DEFAULT_PATH = "diffprof.db"
#: Earlier runs :meth:`Store.history` looks at, newest first.
HISTORY_RUNS = 20

RunStatus = Literal["running", "finished", "failed", "interrupted"]
#: Statuses a run can end in (``finish_run``).
FINAL_STATUSES: tuple[RunStatus, ...] = ("finished", "failed", "interrupted")


class Store:
    """Benchmark runs and cells in an SQLite file or a PostgreSQL database (created on first use).

    Args:
        path (`str` or `Path`, defaults to ``"diffprof.db"``): the database file; ``":memory:"``
            gives a private in-memory store (tests, one-off scripts); ``postgresql://user@host/db``
            a PostgreSQL database (``pip install 'diffprof[postgres]'``).
        timeout (`float`, defaults to 60): seconds a write waits for another process's write before
            giving up; cells are written in milliseconds, so waiting this long means something hangs.
        create (`bool`, defaults to True): make the store when it does not exist yet; False raises a
            :class:`StoreError` instead (commands that only read refuse to make an empty store).

    Use as a context manager (``with Store(path) as store:``) or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] | StoreLocation = DEFAULT_PATH, timeout: float = 60.0, *, create: bool = True) -> None:
        self.location = path if isinstance(path, StoreLocation) else parse_location(path)
        #: Where the store is, as messages show it: the file path, or the URL without its password.
        self.path = self.location.shown
        self.timeout = timeout
        self._conn: Connection = connect(self.location, timeout, create=create, default_name=DEFAULT_PATH)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._conn.backend

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

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: all of it is committed, or none of it."""
        with self._transaction(self._conn.begin_write):
            yield self._conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read-only snapshot: what several queries read belongs together, whatever other
        processes commit meanwhile (a cell replaced between reading cells and their metrics)."""
        with self._transaction(self._conn.begin_read):
            yield self._conn

    @contextmanager
    def _transaction(self, begin: Any) -> Iterator[None]:
        conn = self._conn
        try:
            begin()
            yield
            conn.commit()
        except BaseException as exc:
            error = conn.translate(exc)
            try:
                if conn.in_transaction:
                    conn.rollback()
            except Exception:  # pragma: no cover - a lost server cannot roll back; the error says so
                pass
            if error is not None:
                raise error from exc
            raise

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
        me = Owner.current()
        with self._write() as conn:
            return conn.insert(
                "INSERT INTO runs (created_at, status, command, config, environment, name, host, pid, started, uid) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (now_iso(), command, dumps(config), dumps(environment), name, me.host, me.pid, me.started, schema.new_uid()),
            )

    def finish_run(self, run_id: RunRefLike, status: RunStatus = "finished") -> None:
        """Mark a run ``finished``, ``failed`` (the run itself broke) or ``interrupted`` (Ctrl-C)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish_run status must be one of {FINAL_STATUSES}, not {status!r}")
        rid = self.resolve(run_id)
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now_iso(), rid))

    def resume_run(self, ref: RunRefLike, *, force: bool = False) -> int:
        """Mark a run ``running`` again, owned by this process, and return its id.

        Refused while the process that owns a ``running`` run still lives (both would measure the
        same cells); a run whose owner is gone (killed, or its pid now another process's) is taken
        over. An owner on another host cannot be checked and counts as alive unless ``force``.
        Check and claim are one transaction that holds the run against every other writer (SQLite:
        the immediate transaction; PostgreSQL: the run's row lock, taken before the owner is read),
        so of two resumes started together one wins and the other sees the winner as the live owner.
        Pair with :meth:`finished_keys` to skip what is done and :meth:`add_cell` for the rest.
        """
        rid = self.resolve(ref)
        me = Owner.current()
        with self._write() as conn:
            conn.lock_run(rid)
            status, host, pid, started = conn.execute("SELECT status, host, pid, started FROM runs WHERE id = ?", (rid,)).fetchone()
            owner = Owner(host, pid, started)
            if status == "running" and owner != me:
                alive = owner.alive()
                if alive or (alive is None and not force):
                    raise owned_error(rid, owner, self.path, checked=alive is not None)
            conn.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, host = ?, pid = ?, started = ? WHERE id = ?",
                (me.host, me.pid, me.started, rid),
            )
        return rid

    def cell_counts(self, run_id: RunRefLike) -> dict[str, int]:
        """How many of the run's cells are stored ``ok`` and ``failed``."""
        rid = self.resolve(run_id)
        counts = {"ok": 0, "failed": 0}
        for status, count in self._conn.execute("SELECT status, COUNT(*) FROM cells WHERE run_id = ? GROUP BY status", (rid,)):
            counts[status] = int(count)
        return counts

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
        sql = f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        with self._read() as conn:
            runs = [run_from_row(row) for row in conn.execute(sql, params).fetchall()]
            if runs:
                marks = ",".join("?" * len(runs))
                counts = conn.execute(
                    f"SELECT run_id, status, COUNT(*) FROM cells WHERE run_id IN ({marks}) GROUP BY run_id, status",
                    [r.id for r in runs],
                ).fetchall()
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
        with self._read() as conn:
            rid = resolve_ref(conn, ref, self.path)
            run = run_from_row(conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (rid,)).fetchone())
            run.cells = read_cells(conn, rid, artifacts)
        for cell in run.cells:
            run.counts[cell.status] = run.counts.get(cell.status, 0) + 1
        return run

    # ------------------------------------------------------------------ cells
    def add_cell(self, run_id: RunRefLike, cell: CellResult) -> int:
        """Store a finished cell in its own transaction and return its id.

        Committed (and synced) before returning, so a crash afterwards cannot lose it. A cell whose
        key is already in the run replaces the earlier attempt (a later round's merge, a retried
        failure) under the same id, with its metrics, samples, rounds and artifacts. An empty
        ``finished_at`` is stamped with the current time.
        """
        if cell.status not in ("ok", "failed"):
            raise ValueError(f"cell status must be 'ok' or 'failed', not {cell.status!r}")
        rid = self.resolve(run_id)
        with self._write() as conn:
            return insert_cell(conn, rid, cell)

    def set_machine(self, run_id: RunRefLike, machine: dict[str, Any]) -> None:
        """Record the host's state while the run measured (:mod:`diffprof.profiler.machine`)."""
        rid = self.resolve(run_id)
        with self._write() as conn:
            conn.execute("UPDATE runs SET machine = ? WHERE id = ?", (dumps(machine), rid))

    def machine(self, run_id: RunRefLike) -> dict[str, Any]:
        """The machine state a run recorded (empty when it recorded none), without its cells."""
        row = self._conn.execute("SELECT machine FROM runs WHERE id = ?", (self.resolve(run_id),)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def history(self, keys: list[str], before: int | None = None, limit: int = HISTORY_RUNS) -> list[RunInfo]:
        """Earlier runs (id below ``before``, or any run when None; newest first, at most ``limit``)
        holding an ok cell with one of ``keys``, each with just those cells: the baselines a noise
        floor is drawn from. One read snapshot, on either backend."""
        if not keys:
            return []
        wanted = list(dict.fromkeys(keys))
        marks = ",".join("?" * len(wanted))
        bound = "" if before is None else " AND run_id < ?"
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT run_id FROM cells WHERE cell_key IN ({marks}) AND status = 'ok'{bound} ORDER BY run_id DESC LIMIT ?",
                [*wanted, *([] if before is None else [int(before)]), int(limit)],
            ).fetchall()
            runs = []
            for (rid,) in rows:
                run = run_from_row(conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (rid,)).fetchone())
                run.cells = [c for c in read_cells(conn, int(rid)) if c.key in wanted]
                runs.append(run)
        return runs

    def find_uid(self, uid: str) -> int | None:
        """The id of the run with this uid here (a run copied from another store), or None."""
        row = self._conn.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else int(row[0])

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

    # ------------------------------------------------------------------ between stores
    def copy_to(self, dest: Store, ref: RunRefLike) -> Copied:
        """Copy run ``ref`` with its cells, metrics, samples and artifacts into ``dest``
        (``diffprof push``/``pull``); idempotent, by the run's uid (see :mod:`.transfer`).

        Raises:
            StoreError: no such run, or ``dest`` is this very store.
        """
        if dest.location.target == self.location.target and dest.backend == self.backend:
            raise StoreError(f"{self.path} is both the source and the destination", "push to another store: --to URL (pull: --from URL)")
        with self._read() as source:
            rid = resolve_ref(source, ref, self.path)
            rows = read_run_rows(source, rid)
            with dest._write() as conn:
                return write_run_rows(conn, rows, rid)

    def integrity_problems(self) -> list[str]:
        """What is wrong with the stored rows (empty when sound): the database's own checks
        (SQLite's ``integrity_check`` and ``foreign_key_check``; PostgreSQL's validated foreign
        keys), orphaned rows, duplicated cell keys, runs without a uid."""
        with self._read() as conn:
            return schema.integrity_problems(conn)

    # ------------------------------------------------------------------ analysis
    def cells_frame(self, ref: RunRefLike) -> pd.DataFrame:
        """One row per cell of a run, for pandas analysis: :func:`diffprof.analysis.frame.cells_frame`
        of :meth:`get_run` (the same frame ``report.run_frame`` gives and the CSV report writes).

        Raises:
            DiffprofError: pandas is not installed.
        """
        from diffprof.analysis.frame import cells_frame

        return cells_frame(self.get_run(ref))


def owned_error(rid: int, owner: Owner, path: str, *, checked: bool) -> StoreError:
    """The refusal of a resume while another live process (or one that cannot be checked) measures the run."""
    if checked:
        return StoreError(
            f"run {rid} in {path} is still being measured by {owner.describe()}: resuming it too would measure its cells twice",
            "wait for it to finish (`diffprof runs` shows its status), or stop that process first: it keeps every cell it finished",
        )
    return StoreError(
        f"run {rid} in {path} is marked running by {owner.describe()}, which cannot be checked from this host",
        "resume it on that host; if that process is gone, add --force to take the run over",
    )
