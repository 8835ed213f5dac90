"""All SQL of conflicts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.models import Conflict, Member


async def page(
    session: AsyncSession,
    tenant_id: int,
    *,
    after: int,
    limit: int,
    status: str | None,
    member_id: int | None,
    field: str | None,
    source: str | None,
) -> list[Conflict]:
    """A tenant's conflicts in id order after `after`, filtered; one row more than `limit`."""
    statement = select(Conflict).where(Conflict.tenant_id == tenant_id, Conflict.id > after)
    for column, value in (
        (Conflict.status, status),
        (Conflict.member_id, member_id),
        (Conflict.field, field),
        (Conflict.source, source),
    ):
        if value is not None:
            statement = statement.where(column == value)
    return list((await session.scalars(statement.order_by(Conflict.id).limit(limit + 1))).all())


async def for_update(session: AsyncSession, tenant_id: int, conflict_id: int) -> Conflict | None:
    statement = select(Conflict).where(Conflict.id == conflict_id, Conflict.tenant_id == tenant_id)
    return await session.scalar(statement.with_for_update())


async def member_for_update(session: AsyncSession, member_id: int) -> Member | None:
    return await session.scalar(select(Member).where(Member.id == member_id).with_for_update())


async def email_holder(session: AsyncSession, tenant_id: int, email: str) -> int | None:
    return await session.scalar(select(Member.id).where(Member.tenant_id == tenant_id, Member.email == email))
