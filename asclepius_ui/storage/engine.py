"""Database URLs and engines: psycopg 3 for PostgreSQL; for SQLite a WAL file, a long busy timeout and writers that
take the write lock when their transaction begins."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from ..errors import StorageError


def normalize_url(url: str) -> URL:
    """Parse ``url``; a bare ``postgresql://`` means psycopg 3."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise StorageError(f"Not a database URL: {url!r} (e.g. sqlite:///ratings.db or "
                           "postgresql://user:pass@host/db).") from None
    if u.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2; we ship psycopg 3
        u = u.set(drivername="postgresql+psycopg")
    return u


def create_db_engine(url: str) -> Engine:
    """A pooled engine for ``url``; SQLite writers (``execution_options(writer=True)``) begin IMMEDIATE."""
    u = normalize_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, pool_size=10, max_overflow=60, pool_timeout=60, pool_pre_ping=True)
    memory = u.database in (None, "", ":memory:")
    if memory:
        engine = create_engine(u, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": 60},
                               pool_size=10, max_overflow=60, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, so writers can take the lock up front
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # A writer takes the write lock when it begins (not half-way), so the busy timeout applies, no deadlock.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writer") else "BEGIN")

    return engine


def make_private(url: str) -> None:
    """A SQLite database file and its ``-wal``/``-shm`` readable by this user only (a file made by an older
    version, or before the private umask, may be 0644); a server database or one in memory is left alone."""
    u = normalize_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return
    db = Path(u.database).expanduser()
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except (FileNotFoundError, PermissionError):
            continue
