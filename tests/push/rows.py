"""What a push left in the database, read back in id order: its batches, their requests, their jobs, and the
members it pushed."""

from __future__ import annotations

from sqlalchemy import select

from membersync.models import Job, Member, PushAttempt, PushBatch, PushBatchMember
from membersync.push.tasks import PUSH_BATCH
from membersync.runtime import Runtime


async def push_batches(runtime: Runtime) -> list[PushBatch]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(PushBatch).order_by(PushBatch.id))).all())


async def push_attempts(runtime: Runtime) -> list[PushAttempt]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(PushAttempt).order_by(PushAttempt.id))).all())


async def push_jobs(runtime: Runtime) -> list[Job]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(Job).where(Job.name == PUSH_BATCH.name).order_by(Job.id))).all())


async def pushed_members(runtime: Runtime, destination: str = "subscribers") -> set[tuple[int, str | None]]:
    """(member id, email) of every member in a succeeded batch to `destination`."""
    statement = (
        select(Member.id, Member.email)
        .join(PushBatchMember, PushBatchMember.member_id == Member.id)
        .join(PushBatch, PushBatch.id == PushBatchMember.batch_id)
        .where(PushBatch.destination == destination, PushBatch.status == "succeeded")
    )
    async with runtime.database.read_sessions() as session:
        return {(member_id, email) for member_id, email in (await session.execute(statement)).all()}
