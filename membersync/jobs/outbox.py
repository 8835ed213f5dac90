"""Messages that wait for their unit of work to commit: sent after commit, dropped on rollback."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from membersync.jobs.queue import JobQueue

OUTBOX_KEY = "membersync_outbox"


@dataclass(frozen=True)
class PendingMessages:
    queue: str
    job_ids: list[int]
    eta: datetime | None = None


def defer(session: AsyncSession, queue: str, job_ids: list[int], eta: datetime | None = None) -> None:
    if job_ids:
        session.info.setdefault(OUTBOX_KEY, []).append(PendingMessages(queue, list(job_ids), eta))


def take(session: AsyncSession) -> list[PendingMessages]:
    pending: list[PendingMessages] = session.info.pop(OUTBOX_KEY, [])
    return pending


def drop(session: AsyncSession) -> None:
    session.info.pop(OUTBOX_KEY, None)


def mark(session: AsyncSession) -> int:
    """Where the outbox stands now: `drop_since` forgets what was added after."""
    return len(session.info.get(OUTBOX_KEY, []))


def drop_since(session: AsyncSession, position: int) -> None:
    """Forget the messages of writes rolled back to a savepoint taken at `position`."""
    del session.info.get(OUTBOX_KEY, [])[position:]


async def send(queue: JobQueue, messages: list[PendingMessages]) -> None:
    """Hand committed rows to the queue, off the event loop (huey's client is blocking)."""
    if messages:
        await asyncio.to_thread(_send_all, queue, messages)


def _send_all(queue: JobQueue, messages: list[PendingMessages]) -> None:
    for message in messages:
        queue.send(message.queue, message.job_ids, message.eta)
