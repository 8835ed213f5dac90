"""Alembic environment: the same migrations serve SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

import membersync.models
from membersync.db.engine import open_sync_engine

config = context.config
target_metadata = membersync.models.Base.metadata


def run_migrations_online() -> None:
    url: str = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url") or ""
    engine = open_sync_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
