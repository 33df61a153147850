"""Alembic environment: the URL comes from the caller (db.upgrade) or the settings."""

from alembic import context
from sqlalchemy import create_engine, pool

from newsletter.config import get_settings
from newsletter.models import Base

config = context.config
url = config.attributes.get("url") or get_settings().db_url
connectable = config.attributes.get("connection")


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table, so one set of
        # migrations serves SQLite and PostgreSQL.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connectable is not None:
    run(connectable)
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        run(connection)
    engine.dispose()
