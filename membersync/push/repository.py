"""All SQL of pushing: which members a push takes, its batches, their members and their requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from membersync.db.engine import dialect_of
from membersync.db.upsert import in_values, insert_many
from membersync.destinations.contract import Subscriber
from membersync.models import Member, PushAttempt, PushBatch, PushBatchMember
from membersync.models.base import table_of
from membersync.models.push import UNFINISHED_BATCH

WAITING = ("queued", "retrying")

# A batch's read and write-back run for every batch sent: built once, with bound parameters, as Core statements
# (building and keying a statement costs more than the database's work for it).
_MEMBERS = table_of(Member)


def _subscriber_name() -> ColumnElement[str]:
    """The member's name or, when it is empty, the given and family names that are not, joined by a space."""
    given, family = _MEMBERS.c.given_name, _MEMBERS.c.family_name
    return case(
        (_MEMBERS.c.name != "", _MEMBERS.c.name),
        (and_(given != "", family != ""), given + " " + family),
        (given != "", given),
        else_=func.coalesce(family, ""),
    )


_BATCHES = table_of(PushBatch)
_BATCH_MEMBERS = table_of(PushBatchMember)
_BATCH_TO_SEND = (
    select(_BATCHES.c.status, _BATCHES.c.idempotency_key)
    .add_columns(_MEMBERS.c.id, _MEMBERS.c.email, _subscriber_name(), func.coalesce(_MEMBERS.c.time_zone, "UTC"))
    .select_from(_BATCHES)
    .outerjoin(_BATCH_MEMBERS, _BATCH_MEMBERS.c.batch_id == _BATCHES.c.id)
    .outerjoin(_MEMBERS, _MEMBERS.c.id == _BATCH_MEMBERS.c.member_id)
    .where(_BATCHES.c.id == bindparam("batch"))
    .order_by(_BATCH_MEMBERS.c.member_id)
)
_TENANT_BATCH_TO_SEND = _BATCH_TO_SEND.where(_BATCHES.c.tenant_id == bindparam("tenant"))
# No SET clause: the columns set are the parameters given besides "batch".
_SET_BATCH = update(_BATCHES).where(_BATCHES.c.id == bindparam("batch"))
_ADD_ATTEMPT = insert(table_of(PushAttempt))


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


@dataclass(frozen=True)
class BatchToSend:
    status: str
    idempotency_key: str
    subscribers: list[Subscriber]


async def batch_to_send(connection: AsyncConnection, batch_id: int, tenant_id: int | None) -> BatchToSend | None:
    """The batch, if it exists in the tenant, with its members as they are now (one deleted since is gone),
    in one query."""
    if tenant_id is None:
        rows = (await connection.execute(_BATCH_TO_SEND, {"batch": batch_id})).all()
    else:
        rows = (await connection.execute(_TENANT_BATCH_TO_SEND, {"batch": batch_id, "tenant": tenant_id})).all()
    if not rows:
        return None
    status, key = rows[0][:2]
    # A batch with no members left has one row, its member columns empty.
    return BatchToSend(status, key, [Subscriber(*row[2:]) for row in rows if row[2] is not None])


async def set_batch(session: AsyncSession, batch_id: int, **values: Any) -> None:
    """Set the named columns of one batch."""
    await session.execute(_SET_BATCH, {"batch": batch_id, **values})


async def add_attempt(session: AsyncSession, attempt: dict[str, Any]) -> None:
    await session.execute(_ADD_ATTEMPT, attempt)


async def attempts_of(session: AsyncSession, batch_ids: Sequence[int]) -> list[PushAttempt]:
    statement = select(PushAttempt).where(in_values(dialect_of(session), PushAttempt.batch_id, list(batch_ids)))
    return list((await session.scalars(statement.order_by(PushAttempt.id))).all())
