"""Migrations on an empty database of each kind: upgrade to head, then no drift from the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from membersync.db import migrate
from membersync.db.urls import sync_url
from membersync.errors import DatabaseNotMigrated
from tests.conftest import POSTGRES_URL, require_service


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"mstest_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(sync_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_upgrade_from_empty_then_no_drift(empty_database: str) -> None:
    with pytest.raises(DatabaseNotMigrated, match="membersync db upgrade"):
        migrate.ensure_migrated(empty_database)
    migrate.upgrade(empty_database)
    migrate.check(empty_database)
    migrate.ensure_migrated(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision(empty_database)


def test_upgrade_is_idempotent(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision(empty_database)
