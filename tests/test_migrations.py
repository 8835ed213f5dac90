"""Migrations on an empty database of each kind: upgrade to head, then no drift from the models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, create_engine, inspect, text

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


NOW = "2026-11-22 10:00:00+00:00"


def _tenant_and_member(connection: Connection) -> None:
    """Tenant 1 and its member 7, written as the schema of any revision since 0001 takes them."""
    connection.execute(
        text("INSERT INTO tenants (id, slug, name, created_at) VALUES (1, 'acme', 'Acme', :now)"), {"now": NOW}
    )
    connection.execute(
        text(
            "INSERT INTO members (id, tenant_id, email, status, attributes, created_at, updated_at) "
            "VALUES (7, 1, 'ada@example.org', 'active', '{}', :now, :now)"
        ),
        {"now": NOW},
    )


def test_0006_copies_each_batch_destination_to_its_members_and_goes_back(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0005")
    engine = create_engine(sync_url(empty_database))
    now = NOW
    try:
        with engine.begin() as connection:
            _tenant_and_member(connection)
            connection.execute(
                text(
                    "INSERT INTO push_batches (id, tenant_id, destination, run_id, sequence, status, member_count, "
                    "sent_count, idempotency_key, scheduled_at, attempts, created_at, updated_at) VALUES "
                    "(3, 1, 'subscribers', 'run', 1, 'succeeded', 1, 1, 'key-3', :now, 1, :now, :now)"
                ),
                {"now": now},
            )
            connection.execute(text("INSERT INTO push_batch_members (batch_id, member_id) VALUES (3, 7)"))
        migrate.upgrade(empty_database)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT batch_id, member_id, destination FROM push_batch_members")).all()
            read_at = connection.execute(text("SELECT members_read_at FROM push_batches")).scalar_one()
        assert [tuple(row) for row in rows] == [(3, 7, "subscribers")]
        assert read_at is None  # accepted before read times were kept: its members are pushed once more
        migrate.check(empty_database)
        command.downgrade(migrate.alembic_config(empty_database), "0005")
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT batch_id, member_id FROM push_batch_members")).all()
        assert [tuple(row) for row in rows] == [(3, 7)]
    finally:
        engine.dispose()


def _audit_state(engine: Engine) -> tuple[set[str], list[int]]:
    """The columns of audit_entries that have a foreign key, and the ids of its rows."""
    keys = {
        column for key in inspect(engine).get_foreign_keys("audit_entries") for column in key["constrained_columns"]
    }
    with engine.connect() as connection:
        ids = list(connection.execute(text("SELECT id FROM audit_entries ORDER BY id")).scalars())
    return keys, ids


def _with_one_audit_entry(database: str, revision: str) -> Engine:
    """The database at `revision`, holding tenant 1, its member 7 and that member's audit entry 5."""
    migrate.upgrade(database, revision)
    engine = create_engine(sync_url(database))
    with engine.begin() as connection:
        _tenant_and_member(connection)
        connection.execute(
            text(
                "INSERT INTO audit_entries (id, tenant_id, member_id, field, source, operation, actor, at) "
                "VALUES (5, 1, 7, 'email', 'crm', 'apply', 'system', :now)"
            ),
            {"now": NOW},
        )
    return engine


def test_0007_drops_the_audit_tenant_key_keeps_the_entries_and_goes_back(empty_database: str) -> None:
    engine = _with_one_audit_entry(empty_database, "0006")
    try:
        assert _audit_state(engine) == ({"tenant_id", "member_id"}, [5])
        migrate.upgrade(empty_database, "0007")
        assert _audit_state(engine) == ({"member_id"}, [5])
        command.downgrade(migrate.alembic_config(empty_database), "0006")
        assert _audit_state(engine) == ({"tenant_id", "member_id"}, [5])
    finally:
        engine.dispose()


def test_0008_drops_the_audit_member_key_keeps_the_entries_and_goes_back(empty_database: str) -> None:
    engine = _with_one_audit_entry(empty_database, "0007")
    try:
        assert _audit_state(engine) == ({"member_id"}, [5])
        migrate.upgrade(empty_database, "0008")
        assert _audit_state(engine) == (set(), [5])
        command.downgrade(migrate.alembic_config(empty_database), "0007")
        engine.dispose()  # a pooled SQLite connection would still list the foreign keys it read before
        assert _audit_state(engine) == ({"member_id"}, [5])
    finally:
        engine.dispose()


def _audit_changes(engine: Engine) -> list[tuple[int, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, changes FROM audit_entries ORDER BY id")).all()
    return [(entry_id, _json(engine, changes)) for entry_id, changes in rows]


def _audit_fields(engine: Engine) -> list[tuple[int, str, Any, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, field, before, after FROM audit_entries ORDER BY id")).all()
    return [(entry_id, field, *(_json(engine, value) for value in values)) for entry_id, field, *values in rows]


def _as_json(engine: Engine, name: str) -> str:
    """The parameter `name`, JSON text, as a JSON column's value."""
    return f"CAST(:{name} AS jsonb)" if engine.dialect.name == "postgresql" else f":{name}"


def _json(engine: Engine, value: Any) -> Any:
    """A JSON column's value as read: PostgreSQL decodes jsonb; SQLite gives the text, or a number (the column's
    declared type gives it numeric affinity), or NULL."""
    return json.loads(value) if engine.dialect.name == "sqlite" and isinstance(value, str) else value


def test_0009_groups_each_entry_into_changes_and_going_back_splits_them(empty_database: str) -> None:
    engine = _with_one_audit_entry(empty_database, "0008")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_entries (id, tenant_id, member_id, field, before, after, source, operation, "
                    f"actor, at) VALUES (6, 1, 7, 'phone', {_as_json(engine, 'before')}, {_as_json(engine, 'after')}, "
                    "'crm', 'apply', 'system', :now)"
                ),
                {"before": json.dumps("+44 1"), "after": json.dumps({"n": [1, None]}), "now": NOW},
            )
        migrate.upgrade(empty_database)
        migrate.check(empty_database)
        assert _audit_changes(engine) == [(5, {"email": [None, None]}), (6, {"phone": ["+44 1", {"n": [1, None]}]})]
        two = {"email": [None, "a@b.example"], "tier": [1, {"x": "y"}]}
        with engine.begin() as connection:
            changes = _as_json(engine, "two")
            connection.execute(
                text(f"UPDATE audit_entries SET changes = {changes} WHERE id = 6"), {"two": json.dumps(two)}
            )
        command.downgrade(migrate.alembic_config(empty_database), "0008")
        engine.dispose()
        assert [values for _, *values in _audit_fields(engine)] == [
            ["email", None, None],
            ["email", None, "a@b.example"],
            ["tier", 1, {"x": "y"}],
        ]
    finally:
        engine.dispose()
