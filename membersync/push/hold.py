"""When a destination says when to come back (`Retry-After`), its other waiting batches wait until then too,
rather than each finding out with a request of its own."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.jobs import ledger, outbox
from membersync.push import plan, repository


async def hold_back(
    session: AsyncSession, destination: str, until: datetime, spacing: timedelta, refused_batch: int, queue: str
) -> int:
    """Move the batches to `destination` due before `until` (but `refused_batch`, which retries at `until`)
    to one slot apart after it, in their order; returns how many were moved."""
    batches = await repository.waiting_before(session, destination, until, refused_batch)
    due = plan.schedule(len(batches), until + spacing, spacing)
    for batch, at in zip(batches, due, strict=True):
        batch.scheduled_at = at
    jobs = {batch.job_id: at for batch, at in zip(batches, due, strict=True) if batch.job_id is not None}
    for job_id in await ledger.postpone(session, jobs):
        outbox.defer(session, queue, [job_id], eta=jobs[job_id])
    return len(batches)
