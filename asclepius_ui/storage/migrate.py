"""The Alembic runner: brings a database to a schema revision (the scripts live in ``asclepius_ui/migrations``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from .engine import create_db_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` in one transaction (PostgreSQL: one app at a time)."""
    from alembic import command

    cfg = _alembic_config()
    with engine.execution_options(writer=True).begin() as conn:
        if conn.dialect.name == "postgresql":  # two apps opening one database migrate one after the other
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(73661)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (used by tests to build an old schema)."""
    engine = create_db_engine(url)
    try:
        upgrade(engine, revision)
    finally:
        engine.dispose()
