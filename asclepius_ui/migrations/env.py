"""Alembic environment: runs on the connection ``asclepius_ui.storage.migrate`` hands over in ``config.attributes``."""

from alembic import context
from sqlalchemy import create_engine

from asclepius_ui.storage.models import Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # e.g. `alembic -x url=sqlite:///ratings.db upgrade head` by hand
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
        with create_engine(url).begin() as conn:
            context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
