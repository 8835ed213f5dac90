"""All SQL of pushing: which members a push takes, its batches, their members and their requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, ScalarSelect, Select, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from membersync.db.engine import dialect_of
from membersync.db.upsert import in_values, insert_many
from membersync.models import Member, PushAttempt, PushBatch, PushBatchMember
from membersync.models.push import UNFINISHED_BATCH

WAITING = ("queued", "retrying")


def members_to_push(tenant_id: int, destination: str, since: datetime | None) -> Select[int, str]:
    """The tenant's members whose latest batch to `destination` is over and, unless `since` is given (then:
    changed at or after it), not yet pushed there as they are now: never in a batch to it, or changed since
    their latest batch read them."""
    latest = aliased(PushBatch, name="latest_batch")
    finished = or_(latest.id.is_(None), latest.status.not_in(UNFINISHED_BATCH))
    statement = (
        select(Member.id, Member.email)
        .outerjoin(latest, latest.id == _latest_batch_id(destination))
        .where(Member.tenant_id == tenant_id, finished)
        .order_by(Member.id)
    )
    if since is not None:
        return statement.where(Member.updated_at >= since)
    # A batch that did not succeed read nothing; one from before read times were kept has none either.
    read_before_change = or_(latest.members_read_at.is_(None), latest.members_read_at < Member.updated_at)
    return statement.where(or_(latest.id.is_(None), read_before_change))


def _latest_batch_id(destination: str) -> ScalarSelect[int]:
    """The id of the member's latest batch to `destination`. A member joins a new batch only when its
    previous one is over, so the latest is also the last to read it."""
    return (
        select(PushBatchMember.batch_id)
        .where(PushBatchMember.member_id == Member.id, PushBatchMember.destination == destination)
        .order_by(PushBatchMember.batch_id.desc())
        .limit(1)
        .correlate(Member)
        .scalar_subquery()
    )


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
        {"batch_id": batch.id, "member_id": member_id, "destination": batch.destination}
        for batch, ids in zip(batches, members, strict=True)
        for member_id in ids
    ]
    for start in range(0, len(rows), 10_000):
        statement, parameters = insert_many(dialect_of(session), PushBatchMember, rows[start : start + 10_000])
        await session.execute(statement, parameters or None)


async def batch_to_send(session: AsyncSession, batch_id: int, tenant_id: int | None) -> Row[str, str] | None:
    """The batch's (status, idempotency key), if it exists in the tenant."""
    statement = select(PushBatch.status, PushBatch.idempotency_key).where(PushBatch.id == batch_id)
    if tenant_id is not None:
        statement = statement.where(PushBatch.tenant_id == tenant_id)
    return (await session.execute(statement)).first()


async def batch_members(
    session: AsyncSession, batch_id: int
) -> Sequence[Row[int, str, str | None, str | None, str | None, str | None]]:
    """The batch's members as they are now (one deleted since is gone)."""
    statement = (
        select(Member.id, Member.email, Member.name, Member.given_name, Member.family_name, Member.time_zone)
        .join(PushBatchMember, PushBatchMember.member_id == Member.id)
        .where(PushBatchMember.batch_id == batch_id)
        .order_by(Member.id)
    )
    # Through the connection: plain rows, without the ORM's per-row loading, for a thousand rows a batch.
    connection = await session.connection()
    return (await connection.execute(statement)).all()


async def set_batch(session: AsyncSession, batch_id: int, **values: Any) -> None:
    await session.execute(
        update(PushBatch).where(PushBatch.id == batch_id).values(**values).execution_options(synchronize_session=False)
    )


async def add_attempt(session: AsyncSession, attempt: dict[str, Any]) -> None:
    await session.execute(insert(PushAttempt).values(**attempt))


async def attempts_of(session: AsyncSession, batch_ids: Sequence[int]) -> list[PushAttempt]:
    statement = select(PushAttempt).where(in_values(dialect_of(session), PushAttempt.batch_id, list(batch_ids)))
    return list((await session.scalars(statement.order_by(PushAttempt.id))).all())
