"""A throwaway PostgreSQL server for the tests and benchmarks: Debian's binaries, a temporary data
folder, a unix socket in it (no TCP port, so parallel test sessions never collide), fsync off.

``.ci/run`` installs Debian's ``postgresql`` package when its binaries are missing, and so does
the test set-up (:func:`install_postgresql`). initdb refuses to run as root, so as root the server
runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Settings for a disposable server: durability off (the data dies with the test session), few
#: resources (the CI machine has 2 cores and other tests beside it).
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "60",
}
SUPERUSER = "diffprof"


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: Debian's newest /usr/lib/postgresql/N/bin, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def install_postgresql() -> Path | None:
    """``apt-get install postgresql`` (root only; the package lists are refreshed when the install
    fails on stale ones); the bindir, or None when it could not be done."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]
    try:
        if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
            subprocess.run(install, capture_output=True, env=env, timeout=900)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return find_bindir()


class PostgresServer:
    """``start()`` a cluster, ``create_store()`` for each test, ``stop()`` at the end."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="diffprof-pg-"))
        self.data = self.root / "data"
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:  # pragma: no cover
                raise RuntimeError("initdb refuses root and runuser is missing")
            self._as = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
            options = " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                      "-o", f"-k {self.root} {options}", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{log}") from exc
        return self

    def url(self, database: str = "postgres", schema: str | None = None) -> str:
        """The URL of ``database``; with ``schema``, one whose tables live in that schema."""
        options = f"&options=-csearch_path%3D{schema}" if schema else ""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}{options}"

    def create_store(self, prefix: str = "t") -> str:
        """The URL of a new, empty place for a store: a schema of its own in the ``postgres``
        database (instant, where ``CREATE DATABASE`` takes most of a second per test)."""
        import psycopg

        name = f"{prefix}{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return self.url(schema=name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
