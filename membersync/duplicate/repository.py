"""All SQL of duplicate detection and member merging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_ignore
from membersync.models import (
    AuditEntry,
    Conflict,
    DuplicatePair,
    Entitlement,
    ExternalLink,
    ExternalProfile,
    Member,
    MemberMeta,
    SyncOperation,
)

SCAN_CHUNK = 5000
NO_SYNC = {"synchronize_session": False}
CANDIDATE_COLUMNS = (Member.id, Member.email, Member.phone, Member.given_name, Member.family_name, Member.name)


async def stream_candidates(session: AsyncSession, tenant_id: int) -> AsyncIterator[list[Any]]:
    """The tenant's members as matching needs them, in id order, a chunk at a time."""
    after = 0
    while True:
        statement = (
            select(*CANDIDATE_COLUMNS, Member.address)
            .where(Member.tenant_id == tenant_id, Member.id > after)
            .order_by(Member.id)
            .limit(SCAN_CHUNK)
        )
        rows = list((await session.execute(statement)).all())
        if not rows:
            return
        yield rows
        after = rows[-1][0]


async def insert_pairs(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Record possible duplicates not recorded before; returns how many were new."""
    if not rows:
        return 0
    statement = insert_or_ignore(dialect_of(session), DuplicatePair, ["first_member_id", "second_member_id"])
    result = await session.execute(statement.returning(DuplicatePair.id), rows)
    return len(result.all())


async def pair_for_update(session: AsyncSession, tenant_id: int, pair_id: int) -> DuplicatePair | None:
    statement = select(DuplicatePair).where(DuplicatePair.id == pair_id, DuplicatePair.tenant_id == tenant_id)
    return await session.scalar(statement.with_for_update())


async def members_for_update(session: AsyncSession, tenant_id: int, ids: list[int]) -> dict[int, Member]:
    statement = select(Member).where(Member.tenant_id == tenant_id, Member.id.in_(ids)).with_for_update()
    return {member.id: member for member in (await session.scalars(statement)).all()}


async def page(
    session: AsyncSession, tenant_id: int, *, after: int, limit: int, status: str | None
) -> list[DuplicatePair]:
    statement = select(DuplicatePair).where(DuplicatePair.tenant_id == tenant_id, DuplicatePair.id > after)
    if status is not None:
        statement = statement.where(DuplicatePair.status == status)
    return list((await session.scalars(statement.order_by(DuplicatePair.id).limit(limit + 1))).all())


async def move_records(session: AsyncSession, loser: int, survivor: int) -> None:
    """Give the survivor the loser's links, profiles, entitlements, meta, history and conflicts; where the
    survivor already has one of the same kind (same source, key or resource), the survivor's stays."""
    await _move_unique(
        session, ExternalProfile, ExternalProfile.member_id, (ExternalProfile.provider,), loser, survivor
    )
    await _move_unique(
        session,
        Entitlement,
        Entitlement.member_id,
        (Entitlement.source_provider, Entitlement.resource_id),
        loser,
        survivor,
    )
    await _move_unique(session, MemberMeta, MemberMeta.member_id, (MemberMeta.key,), loser, survivor)
    await _move_links(session, loser, survivor)
    await _move_conflicts(session, loser, survivor)
    for model in (AuditEntry, SyncOperation):
        await session.execute(
            update(model).where(model.member_id == loser).values(member_id=survivor),
            execution_options=NO_SYNC,
        )


async def _move_unique(
    session: AsyncSession, model: Any, owner: Any, keys: tuple[Any, ...], loser: int, survivor: int
) -> None:
    survivor_keys = set((await session.execute(select(*keys).where(owner == survivor))).all())
    loser_rows = (await session.execute(select(model.id, *keys).where(owner == loser))).all()
    clashing = [row[0] for row in loser_rows if tuple(row[1:]) in survivor_keys]
    if clashing:
        await session.execute(delete(model).where(model.id.in_(clashing)), execution_options=NO_SYNC)
    await session.execute(update(model).where(owner == loser).values({owner: survivor}), execution_options=NO_SYNC)


async def shared_link_sources(session: AsyncSession, tenant_id: int, first: int, second: int) -> list[str]:
    """Sources where both members have a live link."""
    statement = (
        select(ExternalLink.source)
        .where(
            ExternalLink.tenant_id == tenant_id,
            ExternalLink.entity_type == "member",
            ExternalLink.entity_id.in_([str(first), str(second)]),
            ExternalLink.deleted_at.is_(None),
        )
        .group_by(ExternalLink.source)
        .having(func.count() > 1)
        .order_by(ExternalLink.source)
    )
    return list((await session.scalars(statement)).all())


async def drop_other_pairs(session: AsyncSession, member_id: int, keep_pair_id: int) -> None:
    """Pairs of a member about to be merged away, other than the one being merged: they asked about it."""
    involved = or_(DuplicatePair.first_member_id == member_id, DuplicatePair.second_member_id == member_id)
    await session.execute(
        delete(DuplicatePair).where(involved, DuplicatePair.id != keep_pair_id), execution_options=NO_SYNC
    )


async def _move_links(session: AsyncSession, loser: int, survivor: int) -> None:
    mine = ExternalLink.entity_type == "member"
    # Only a link the source deleted can clash here (live ones in a shared source refuse the merge), and one
    # member has one link per source: the survivor's stays.
    survivor_sources = select(ExternalLink.source).where(mine, ExternalLink.entity_id == str(survivor))
    clashing = delete(ExternalLink).where(
        mine, ExternalLink.entity_id == str(loser), ExternalLink.source.in_(survivor_sources)
    )
    await session.execute(clashing, execution_options=NO_SYNC)
    await session.execute(
        update(ExternalLink).where(mine, ExternalLink.entity_id == str(loser)).values(entity_id=str(survivor)),
        execution_options=NO_SYNC,
    )
    # The survivor now holds values from both members: a source's record sent again must be merged again.
    await session.execute(
        update(ExternalLink).where(mine, ExternalLink.entity_id == str(survivor)).values(fingerprint=None),
        execution_options=NO_SYNC,
    )


async def _move_conflicts(session: AsyncSession, loser: int, survivor: int) -> None:
    open_fields = select(Conflict.field).where(Conflict.member_id == survivor, Conflict.status == "pending")
    await session.execute(
        update(Conflict)
        .where(Conflict.member_id == loser, Conflict.status == "pending", Conflict.field.in_(open_fields))
        .values(status="superseded"),
        execution_options=NO_SYNC,
    )
    await session.execute(
        update(Conflict).where(Conflict.member_id == loser).values(member_id=survivor),
        execution_options=NO_SYNC,
    )


async def delete_member(session: AsyncSession, member_id: int) -> None:
    await session.execute(delete(Member).where(Member.id == member_id), execution_options=NO_SYNC)
