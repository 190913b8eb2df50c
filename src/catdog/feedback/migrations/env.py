"""Alembic environment of the feedback database.

catdog runs the migrations itself (:meth:`catdog.feedback.store.FeedbackStore.migrate`, on first
use and by ``catdog feedback migrate``), handing over a connection that already holds the
migration lock; Alembic's own command line works too, given ``sqlalchemy.url``::

    alembic -c /dev/null -x url=sqlite:///feedback.sqlite3 ...   # rarely needed
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from catdog.feedback.models import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///path/to/feedback.sqlite3 ...")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("catdog's feedback migrations run online only")
run_migrations_online()
