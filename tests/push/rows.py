"""What a push left in the database, read back in id order: its batches, their requests, their jobs."""

from __future__ import annotations

from sqlalchemy import select

from membersync.models import Job, PushAttempt, PushBatch
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
