"""All SQL of pushing: which members a push takes, its batches, their members and their requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, cast, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import in_values, insert_many
from membersync.models import ExternalLink, Member, PushAttempt, PushBatch, PushBatchMember
from membersync.models.push import UNFINISHED_BATCH

WAITING = ("queued", "retrying")


def members_to_push(tenant_id: int, destination: str, since: datetime | None) -> Select[int, str]:
    """The tenant's members not in an unfinished batch to `destination` and, unless `since` is given (then:
    changed at or after it), never pushed there or changed since their last successful push."""
    in_flight = exists().where(
        PushBatchMember.member_id == Member.id,
        PushBatch.id == PushBatchMember.batch_id,
        PushBatch.destination == destination,
        PushBatch.status.in_(UNFINISHED_BATCH),
    )
    statement = select(Member.id, Member.email).where(Member.tenant_id == tenant_id, ~in_flight)
    if since is not None:
        return statement.where(Member.updated_at >= since).order_by(Member.id)
    link = and_(
        ExternalLink.tenant_id == tenant_id,
        ExternalLink.entity_type == "member",
        ExternalLink.entity_id == cast(Member.id, String),
        ExternalLink.source == destination,
    )
    changed = or_(
        ExternalLink.id.is_(None), ExternalLink.synced_at.is_(None), Member.updated_at > ExternalLink.synced_at
    )
    return statement.outerjoin(ExternalLink, link).where(changed).order_by(Member.id)


async def last_scheduled(session: AsyncSession, destination: str) -> datetime | None:
    """When the last batch still waiting for `destination` is due."""
    statement = select(func.max(PushBatch.scheduled_at)).where(
        PushBatch.destination == destination, PushBatch.status.in_(WAITING)
    )
    return await session.scalar(statement)


async def waiting_before(session: AsyncSession, destination: str, moment: datetime, batch_id: int) -> list[PushBatch]:
    """The batches to `destination` other than `batch_id` still waiting and due before `moment`, in order."""
    statement = select(PushBatch).where(
        PushBatch.destination == destination,
        PushBatch.status.in_(WAITING),
        PushBatch.scheduled_at < moment,
        PushBatch.id != batch_id,
    )
    return list((await session.scalars(statement.order_by(PushBatch.scheduled_at, PushBatch.id))).all())


async def others_due_by(session: AsyncSession, destination: str, moment: datetime, batch_id: int) -> bool:
    """Whether a waiting batch to `destination` other than `batch_id` is due at or before `moment`."""
    statement = select(PushBatch.id).where(
        PushBatch.destination == destination,
        PushBatch.status.in_(WAITING),
        PushBatch.scheduled_at <= moment,
        PushBatch.id != batch_id,
    )
    return await session.scalar(statement.limit(1)) is not None


async def add_batches(session: AsyncSession, batches: list[PushBatch], members: Sequence[Sequence[int]]) -> None:
    """Store the batches and, for each, its members."""
    session.add_all(batches)
    await session.flush()
    rows = [
        {"batch_id": batch.id, "member_id": member_id}
        for batch, ids in zip(batches, members, strict=True)
        for member_id in ids
    ]
    for start in range(0, len(rows), 10_000):
        statement, parameters = insert_many(dialect_of(session), PushBatchMember, rows[start : start + 10_000])
        await session.execute(statement, parameters or None)


async def batch(session: AsyncSession, batch_id: int, tenant_id: int | None) -> PushBatch | None:
    statement = select(PushBatch).where(PushBatch.id == batch_id)
    if tenant_id is not None:
        statement = statement.where(PushBatch.tenant_id == tenant_id)
    return await session.scalar(statement)


async def batch_members(session: AsyncSession, batch_id: int) -> list[Any]:
    """The batch's members as they are now (one deleted since is gone)."""
    statement = (
        select(Member.id, Member.email, Member.name, Member.given_name, Member.family_name, Member.time_zone)
        .join(PushBatchMember, PushBatchMember.member_id == Member.id)
        .where(PushBatchMember.batch_id == batch_id)
        .order_by(Member.id)
    )
    return list((await session.execute(statement)).all())


def sent_members(batch_id: int) -> Select[str, str]:
    """The batch's members that still have an email, as (member id as text, email): what its tracker links
    to the destination are made of."""
    return (
        select(cast(Member.id, String), Member.email)
        .join(PushBatchMember, PushBatchMember.member_id == Member.id)
        .where(PushBatchMember.batch_id == batch_id, Member.email.is_not(None))
    )


async def set_batch(session: AsyncSession, batch_id: int, **values: Any) -> None:
    await session.execute(
        update(PushBatch).where(PushBatch.id == batch_id).values(**values).execution_options(synchronize_session=False)
    )


async def add_attempt(session: AsyncSession, attempt: dict[str, Any]) -> None:
    await session.execute(insert(PushAttempt).values(**attempt))


async def attempts_of(session: AsyncSession, batch_ids: Sequence[int]) -> list[PushAttempt]:
    statement = select(PushAttempt).where(in_values(dialect_of(session), PushAttempt.batch_id, list(batch_ids)))
    return list((await session.scalars(statement.order_by(PushAttempt.id))).all())
