"""Many rows in one statement (`insert_many`, `insert_or_update_many`) store exactly what a row-by-row
INSERT stores (a JSON column's same value, perhaps spaced differently), on SQLite and PostgreSQL (rows as one JSON
parameter; arrays on PostgreSQL for values JSON cannot carry)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import DBAPIError

from membersync.clock import FrozenClock
from membersync.db.engine import dialect_of, install_sqlite_hooks
from membersync.db.upsert import insert_many, insert_or_update_many
from membersync.models import AuditEntry, ExternalLink
from membersync.runtime import Runtime
from tests.factories import make_member, make_tenant

AWKWARD = ["007", '{"a": 1}', "null", "true", "1e3", "  spaced  ", "Zoë ✓ 🙂", "quote ' and \" and \\", "", "[1]"]


def _audit_rows(tenant_id: int, member_id: int, actor: str, now: datetime) -> list[dict[str, Any]]:
    """Audit rows as a table with every kind of column: a JSON column holding awkward values of every JSON kind,
    text columns (one holding awkward text, `actor` the same in every row), a nullable integer and a timestamp."""
    values: list[Any] = [None, *AWKWARD, 12, -3, 10**20, 1.5, True, False, {"nested": [1, None, "x"]}, ["a", 2]]
    return [
        {
            "tenant_id": tenant_id,
            "member_id": member_id,
            "changes": value,
            "source": AWKWARD[index % len(AWKWARD)],
            "operation": "update",
            "operation_id": None if index % 2 else index,
            "actor": actor,
            "at": (now + timedelta(microseconds=index)).astimezone(timezone(timedelta(hours=5))),
        }
        for index, value in enumerate(values)
    ]


# A JSON column's text may differ in spacing (SQLite writes the bulk rows' compactly): its value is compared as read.
_STORED = "SELECT source, operation_id, at FROM audit_entries WHERE actor = :actor ORDER BY id"


async def test_many_rows_at_once_are_stored_as_one_at_a_time_stores_them(runtime: Runtime, clock: FrozenClock) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    async with runtime.unit_of_work() as session:
        statement, parameters = insert_many(
            dialect_of(session), AuditEntry, _audit_rows(tenant.id, member.id, "bulk", clock.now())
        )
        await session.execute(statement, parameters or None)
        for row in _audit_rows(tenant.id, member.id, "single", clock.now()):
            await session.execute(insert(AuditEntry).values(**row))
    async with runtime.database.read_sessions() as session:
        bulk = (await session.execute(text(_STORED), {"actor": "bulk"})).all()
        single = (await session.execute(text(_STORED), {"actor": "single"})).all()
        read = list((await session.scalars(select(AuditEntry).where(AuditEntry.actor == "bulk"))).all())
        changes = select(AuditEntry.changes).order_by(AuditEntry.id)
        single_changes = list(await session.scalars(changes.where(AuditEntry.actor == "single")))
    assert bulk == single
    expected = [row["changes"] for row in _audit_rows(0, 0, "", clock.now())]
    # true stays true, not 1 (which equals True in Python)
    assert [(isinstance(e.changes, bool), e.changes) for e in read] == [(isinstance(v, bool), v) for v in expected]
    assert [entry.changes for entry in read] == single_changes
    assert all(entry.at.tzinfo is not None for entry in read)
    assert read[3].at == (clock.now() + timedelta(microseconds=3)).astimezone(UTC)


async def test_one_row_and_shared_values_are_stored_too(runtime: Runtime, clock: FrozenClock) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    [row] = _audit_rows(tenant.id, member.id, "one", clock.now())[:1]
    async with runtime.unit_of_work() as session:
        statement, parameters = insert_many(dialect_of(session), AuditEntry, [row, row | {"actor": "two"}])
        await session.execute(statement, parameters or None)
    async with runtime.database.read_sessions() as session:
        stored = list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())
    read: list[tuple[str, Any, str, datetime]] = [(e.actor, e.changes, e.source, e.at) for e in stored]
    assert read == [("one", None, AWKWARD[0], clock.now()), ("two", None, AWKWARD[0], clock.now())]


def _looped() -> dict[str, Any]:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    return looped


@pytest.mark.parametrize("odd", [Decimal("1.5"), float("nan"), _looped()], ids=["decimal", "nan", "loop"])
def test_rows_json_cannot_carry_are_bound_row_by_row_on_sqlite(odd: Any) -> None:
    rows = _audit_rows(1, 1, "odd", datetime(2026, 1, 1, tzinfo=UTC))[:2]
    rows[1]["operation_id"] = odd
    statement, parameters = insert_many("sqlite", AuditEntry, rows)
    assert parameters == rows
    assert statement.select is None


async def test_an_upsert_of_many_links_inserts_then_updates(runtime: Runtime, clock: FrozenClock) -> None:
    tenant = await make_tenant(runtime)
    now = clock.now()
    rows: list[dict[str, Any]] = [
        {
            "tenant_id": tenant.id,
            "entity_type": "member",
            "entity_id": str(index),
            "source": "crm",
            "external_id": AWKWARD[index],
            "status": "synced",
            "retry_count": 0,
            "metadata": {"n": index},
            "synced_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for index in range(len(AWKWARD))
    ]
    key = ["tenant_id", "entity_type", "entity_id", "source"]
    later = now + timedelta(hours=1)
    async with runtime.unit_of_work() as session:
        for batch in (rows, [row | {"synced_at": later, "external_id": row["external_id"] + "!"} for row in rows]):
            statement, parameters = insert_or_update_many(
                dialect_of(session), ExternalLink, key, batch, ["external_id", "synced_at"]
            )
            await session.execute(statement, parameters or None)
    async with runtime.database.read_sessions() as session:
        links = list((await session.scalars(select(ExternalLink).order_by(ExternalLink.id))).all())
    assert [(link.external_id, link.synced_at, link.meta) for link in links] == [
        (text_ + "!", later, {"n": index}) for index, text_ in enumerate(AWKWARD)
    ]


@pytest.mark.parametrize("odd", [Decimal("1.5"), float("nan")])
def test_rows_json_cannot_carry_go_as_arrays_on_postgresql(odd: Any) -> None:
    rows = _audit_rows(1, 1, "odd", datetime(2026, 1, 1, tzinfo=UTC))[:2]
    assert "jsonb_array_elements" in str(insert_many("postgresql", AuditEntry, rows)[0])
    rows[1]["operation_id"] = odd
    statement, parameters = insert_many("postgresql", AuditEntry, rows)
    assert parameters == []
    assert "unnest" in str(statement)


@pytest.mark.parametrize("shared", [True, False])
async def test_text_too_long_for_its_column_is_never_cut(runtime: Runtime, clock: FrozenClock, shared: bool) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    rows = _audit_rows(tenant.id, member.id, "x" * 300, clock.now())[:2]
    if not shared:
        rows[0]["actor"] = "short"
    async with runtime.unit_of_work() as session:
        postgresql = dialect_of(session) == "postgresql"
        statement, parameters = insert_many(dialect_of(session), AuditEntry, rows)
        if postgresql:
            with pytest.raises(DBAPIError, match="too long"):
                await session.execute(statement, parameters or None)
        else:
            await session.execute(statement, parameters or None)
    if not postgresql:  # SQLite does not hold text to a declared length: it keeps the whole text
        async with runtime.database.read_sessions() as session:
            stored = list((await session.scalars(select(AuditEntry.actor).order_by(AuditEntry.id))).all())
        assert stored == [row["actor"] for row in rows]


def test_a_sqlite_without_json_arrows_is_refused_with_the_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 37, 2))

    with pytest.raises(RuntimeError, match=r"needs SQLite 3\.38\.0 or newer; Python's sqlite3 module has 3\.37\.2"):
        install_sqlite_hooks(create_engine("sqlite://"))
