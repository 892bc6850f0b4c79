"""PostgreSQL for the storage tests: the server named by ASCLEPIUS_TEST_PG_URL, or a throwaway local cluster.

Import the fixtures into a test module (``from tests.pg import pg_server, pg_url  # noqa: F401``). Without the
variable a cluster is started from Debian's binaries (/usr/lib/postgresql/*/bin) if present, else the tests skip;
with CI=true a missing PostgreSQL is a failure, not a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.ports import free_port

ENV = "ASCLEPIUS_TEST_PG_URL"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Cluster:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only, trust auth (loopback tests)."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql)")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="asclepius-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        run = dict(check=True, capture_output=True, text=True)
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(self.dir / "data"), "-A", "trust",
                                     "-U", "postgres", "-E", "UTF8", "--no-sync"]), **run)
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts,
                                     "-l", str(self.dir / "log"), "-w", "-t", "60", "start"]), **run)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                                     "-w", "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_database(server_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_dsn(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


def raw_execute(url: str, sql: str, rows: list[tuple] | None = None) -> list[tuple]:
    """Run SQL through the plain DB-API driver (sqlite3 or psycopg): for building old schemas in tests."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        try:
            cur = conn.executemany(sql, rows) if rows else conn.execute(sql)
            out = cur.fetchall()
            conn.commit()
            return out
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(_dsn(url)) as conn:
        sql = sql.replace("?", "%s")
        with conn.cursor() as cur:
            if rows:
                cur.executemany(sql, rows)
                return []
            cur.execute(sql)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server's maintenance database, for ``create_database``."""
    url = os.environ.get(ENV)
    if url:
        yield url
        return
    if pg_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: set {ENV} or install Debian's postgresql")
        pytest.skip(f"no PostgreSQL: set {ENV} or install postgresql")
    cluster = Cluster()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture()
def pg_url(pg_server) -> str:
    """A fresh empty PostgreSQL database for one test."""
    return create_database(pg_server)
