"""Look inside a results store without diffprof: sqlite3 for a file, psycopg for a PostgreSQL URL.

The store tests check what is really in the tables through this, not through the code they test.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one statement (committed); ``?`` placeholders on both backends."""
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params or None)
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    with closing(sqlite3.connect(url, isolation_level=None)) as conn:
        return conn.execute(sql, params).fetchall()


def count(url: str, table: str) -> int:
    return int(query(url, f"SELECT COUNT(*) FROM {table}")[0][0])


def columns(url: str, table: str) -> list[str]:
    if is_postgres(url):
        rows = query(url, "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position", (table,))
        return [r[0] for r in rows]
    return [r[1] for r in query(url, f"PRAGMA table_info({table})")]
