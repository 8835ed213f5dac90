"""All SQL of identity: candidate members for a page of records, and the page's writes in a few statements."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    String,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    true,
    union,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import (
    in_values,
    insert_many,
    insert_or_ignore,
    insert_or_update,
    list_parameter,
    listed,
)
from membersync.models import AuditEntry, Conflict, DuplicatePair, Member, SyncOperation, Tenant
from membersync.models.base import table_of
from membersync.models.identity import PENDING_ONLY

CANDIDATE_COLUMNS = ("id", "email", "phone", "given_name", "family_name", "name")


async def targets(session: AsyncSession, tenant_id: int, *, ids: Sequence[int], emails: Sequence[str]) -> list[Any]:
    """Whole rows of the tenant's members with any of these ids or emails: the members a page writes to
    (locked for update on PostgreSQL: the page's merge reads and then writes them)."""
    lookups = [
        select(Member.id).where(Member.tenant_id == tenant_id, in_values(dialect_of(session), column, values))
        for column, values in ((Member.id, ids), (Member.email, emails))
        if values
    ]
    if not lookups:
        return []
    # UNIONed, not ORed: an OR lets the planner fall back to reading the whole tenant, which it does on a table
    # it has no statistics for yet (a tenant's first import).
    found = list((await session.scalars(union(*lookups))).all())
    return await members_by_id(session, found)


async def members_by_id(session: AsyncSession, ids: Sequence[int]) -> list[Any]:
    """Whole rows, as plain rows rather than ORM objects (locked for update on PostgreSQL)."""
    if not ids:
        return []
    dialect = dialect_of(session)
    statement = select(Member.__table__).where(in_values(dialect, Member.id, ids)).order_by(Member.id)
    if dialect == "postgresql":
        statement = statement.with_for_update()
    return list((await session.execute(statement)).all())


async def match_candidates(
    session: AsyncSession, tenant_id: int, *, phones: Sequence[str], name_keys: Sequence[str], per_name_key: int
) -> list[Any]:
    """The columns matching reads of the tenant's members sharing a phone or a name key with the page, at most
    `per_name_key` (the lowest ids) for each name key: a block of thousands of "Smith J" stays bounded. Each row
    is a `matching.Candidate`'s fields in order, then the member's name key; a member found both ways comes twice.
    """
    if per_name_key < 1:
        name_keys = ()
    if not (phones or name_keys):
        return []
    dialect = dialect_of(session)
    parameters = {
        "in_tenant": tenant_id,
        "phones": list_parameter(dialect, phones),
        "name_keys": list_parameter(dialect, name_keys),
        "per_name_key": per_name_key,
        "past_block": max(per_name_key - 1, 0),
    }
    return list((await session.execute(candidates_statement(dialect), parameters)).all())


def candidates_statement(dialect: str) -> CompoundSelect[Any]:
    """The statement `match_candidates` runs, built once per dialect."""
    return _probed_candidates() if dialect == "postgresql" else _blocked_candidates()


def _candidate_columns(members: Any) -> list[Any]:
    postal_code = members.c.address["postal_code"].as_string().label("postal_code")
    return [*(members.c[name] for name in CANDIDATE_COLUMNS), postal_code, members.c.name_key]


@functools.cache
def _probed_candidates() -> CompoundSelect[Any]:
    """PostgreSQL's: one index probe per phone and per name key, each a LATERAL subquery, which the planner
    cannot turn into a join. As a join it read the tenant's every member into a hash whenever its statistics
    were stale or its costs favoured that, as they do for a table that is still being filled (measured with
    EXPLAIN ANALYZE: 50 ms a page at 20,000 members, growing with the tenant, where the probes take 19)."""
    members = table_of(Member)
    tenant = bindparam("in_tenant", type_=members.c.tenant_id.type)
    phones = listed("postgresql", "phones", String())
    keys = listed("postgresql", "name_keys", String())
    # OFFSET 0 keeps the phone subquery apart: without a LIMIT or OFFSET the planner flattens it into a join.
    by_phone = (
        select(*_candidate_columns(members))
        .where(members.c.tenant_id == tenant, members.c.phone == phones.c.value)
        .offset(0)
        .lateral("by_phone")
    )
    by_name = (
        select(*_candidate_columns(members))
        .where(members.c.tenant_id == tenant, members.c.name_key == keys.c.value)
        .order_by(members.c.id)
        .limit(bindparam("per_name_key"))
        .lateral("by_name")
    )
    return union_all(
        select(by_phone).select_from(phones).join(by_phone, true()),
        select(by_name).select_from(keys).join(by_name, true()),
    )


@functools.cache
def _blocked_candidates() -> CompoundSelect[Any]:
    """SQLite's, which has no LATERAL. A block's cut is the id of its `per_name_key`-th member, found by one index
    probe per name key; the rows are then read by (tenant, name key) up to that id, with no sort of the blocks."""
    members = table_of(Member)
    tenant = bindparam("in_tenant", type_=members.c.tenant_id.type)
    columns = _candidate_columns(members)
    keys = listed("sqlite", "name_keys", String())
    earlier = members.alias("earlier")
    last = (
        select(earlier.c.id)
        .where(earlier.c.tenant_id == tenant, earlier.c.name_key == keys.c.value)
        .order_by(earlier.c.id)
        .limit(1)
        .offset(bindparam("past_block"))
        .scalar_subquery()
    )
    blocks = select(keys.c.value.label("name_key"), last.label("last_id")).cte("blocks").prefix_with("MATERIALIZED")
    in_block = and_(members.c.tenant_id == tenant, members.c.name_key == blocks.c.name_key)
    by_name = (
        select(*columns)
        .join_from(blocks, members, in_block)
        .where(or_(blocks.c.last_id.is_(None), members.c.id <= blocks.c.last_id))
    )
    phones = listed("sqlite", "phones", String())
    by_phone = select(*columns).where(members.c.tenant_id == tenant, members.c.phone.in_(select(phones.c.value)))
    return union_all(by_phone, by_name)


async def identity_settings(session: AsyncSession, tenant_id: int) -> dict[str, Any] | None:
    return await session.scalar(select(Tenant.identity_settings).where(Tenant.id == tenant_id))


async def reserve_member_ids(session: AsyncSession, count: int) -> list[int]:
    """`count` new member ids, ascending, given before the members are inserted, so a page's audit rows and links
    can be built while its members are.

    PostgreSQL draws them from the id sequence. SQLite has no sequence, and numbers a new row one past the highest
    id; a write transaction there holds the database's write lock from its BEGIN IMMEDIATE (`db.engine`), so no
    other writer can insert a member before this one commits, and these are the ids SQLite would have given.
    """
    if count == 0:
        return []
    if dialect_of(session) == "postgresql":
        return sorted(await session.scalar(_DRAW_MEMBER_IDS, {"count": count}))
    highest = await session.scalar(select(func.max(Member.id))) or 0
    return list(range(highest + 1, highest + 1 + count))


# The sequence is looked up once, not once per id, and the ids come back as one array, not a row each (1,000 ids:
# 3.5 ms on the server alone, now 1).
_DRAW_MEMBER_IDS = text(
    "WITH sequence AS MATERIALIZED (SELECT pg_get_serial_sequence('members', 'id')::regclass AS id) "
    "SELECT array_agg(nextval(sequence.id)) FROM sequence, generate_series(1, :count)"
)


async def insert_numbered_members(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert new members whose ids the rows already hold (`reserve_member_ids`)."""
    if rows:
        statement, parameters = insert_many(dialect_of(session), Member, rows)
        await session.execute(statement, parameters or None)


async def update_members(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Write the changed members (each row: `id` and the columns), an ORM bulk update by primary key."""
    if rows:
        await session.execute(update(Member), rows)


def audit_insert(session: AsyncSession, rows: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]] | None]:
    """The insert of audit rows, statement and parameters, built apart from running it: building is most of its
    cost on the client, and `write_page` does it while the members insert runs."""
    statement, parameters = insert_many(dialect_of(session), AuditEntry, rows)
    return statement, parameters or None


async def insert_audit(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(*audit_insert(session, rows))


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
    session: AsyncSession, tenant_id: int, source: str, kind: str, now: datetime, details: dict[str, Any]
) -> int:
    """Record the operation a page of records is applied under, with what it did; its id. Inserted with its details
    once the page is decided, before the page's writes, which name it: one statement, not an insert and an update."""
    recording = (
        insert(SyncOperation)
        .values(
            tenant_id=tenant_id,
            member_id=None,
            provider=source,
            kind=kind,
            status="succeeded",
            started_at=now,
            finished_at=now,
            details=details,
        )
        .returning(SyncOperation.id)
    )
    operation_id: int = (await session.execute(recording)).scalar_one()
    return operation_id
