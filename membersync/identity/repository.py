"""All SQL of identity: candidate members for a page of records, and the page's writes in a few statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import in_values, insert_many, insert_or_ignore, insert_or_update
from membersync.models import AuditEntry, Conflict, DuplicatePair, Member, SyncOperation, Tenant
from membersync.models.identity import PENDING_ONLY


async def candidates(
    session: AsyncSession,
    tenant_id: int,
    *,
    ids: Sequence[int],
    emails: Sequence[str],
    phones: Sequence[str],
    name_keys: Sequence[str],
) -> list[Any]:
    """The tenant's members with any of these ids, emails, phones or name keys, in two queries (locked for
    update on PostgreSQL: the page's merge reads and then writes them)."""
    dialect = dialect_of(session)
    # One indexed SELECT per kind of key, UNIONed: an OR of them lets the planner fall back to reading the
    # whole tenant, which it does on a table it has no statistics for yet (a tenant's first import).
    lookups = [
        select(Member.id).where(Member.tenant_id == tenant_id, in_values(dialect, column, values))
        for column, values in (
            (Member.id, ids),
            (Member.email, emails),
            (Member.phone, phones),
            (Member.name_key, name_keys),
        )
        if values
    ]
    if not lookups:
        return []
    found = list((await session.scalars(union(*lookups))).all())
    if not found:
        return []
    # Plain rows, not ORM objects: a page can load thousands of candidates and only reads them.
    statement = select(Member.__table__).where(in_values(dialect, Member.id, found)).order_by(Member.id)
    if dialect == "postgresql":
        statement = statement.with_for_update()
    return list((await session.execute(statement)).all())


async def identity_settings(session: AsyncSession, tenant_id: int) -> dict[str, Any] | None:
    return await session.scalar(select(Tenant.identity_settings).where(Tenant.id == tenant_id))


async def insert_members(session: AsyncSession, tenant_id: int, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert new members; their ids by email (unique per tenant), read back in one query."""
    if not rows:
        return {}
    inserting, parameters = insert_many(dialect_of(session), Member, rows)
    await session.execute(inserting, parameters or None)
    emails = [row["email"] for row in rows]
    reading = select(Member.email, Member.id).where(
        Member.tenant_id == tenant_id, in_values(dialect_of(session), Member.email, emails)
    )
    return {email: member_id for email, member_id in await session.execute(reading)}


async def update_members(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Write the changed members (each row: `id` and the columns), an ORM bulk update by primary key."""
    if rows:
        await session.execute(update(Member), rows)


async def insert_audit(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        statement, parameters = insert_many(dialect_of(session), AuditEntry, rows)
        await session.execute(statement, parameters or None)


async def upsert_conflicts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Open conflicts; a pending one for the same member and field takes the newer incoming value."""
    if not rows:
        return
    statement = insert_or_update(
        dialect_of(session),
        Conflict,
        ["member_id", "field"],
        {},
        ["source", "incoming_value", "incoming_changed_at", "current_value", "reason", "updated_at"],
        where=lambda incoming: Conflict.incoming_changed_at <= incoming.incoming_changed_at,
        index_where=PENDING_ONLY,
    )
    await session.execute(statement, rows)


async def insert_duplicate_pairs(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        statement = insert_or_ignore(dialect_of(session), DuplicatePair, ["first_member_id", "second_member_id"])
        await session.execute(statement, rows)


async def record_operation(
    session: AsyncSession, tenant_id: int, source: str, kind: str, now: datetime
) -> SyncOperation:
    """The operation a page of records is applied under; its details are filled in when the page is done."""
    operation = SyncOperation(
        tenant_id=tenant_id,
        member_id=None,
        provider=source,
        kind=kind,
        status="succeeded",
        started_at=now,
        finished_at=now,
    )
    session.add(operation)
    await session.flush()
    return operation
