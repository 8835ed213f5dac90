"""Alembic, driven from code: upgrade, the drift check, and the start-up schema guard."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from membersync.db.engine import open_sync_engine
from membersync.errors import DatabaseNotMigrated


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "membersync:migrations")
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise when the models and the migrations disagree (alembic check)."""
    command.check(alembic_config(url))


def current_revision(url: str) -> str | None:
    engine = open_sync_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def ensure_migrated(url: str) -> None:
    """Refuse to start on a database whose schema is not at the latest migration."""
    if current_revision(url) != head_revision(url):
        raise DatabaseNotMigrated()
