"""All SQL of the job ledger."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Update,
    bindparam,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_ignore
from membersync.jobs.spec import JobSpec
from membersync.models import Job, JobStatus
from membersync.models.base import table_of

TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD)


@dataclass(frozen=True)
class JobItem:
    tenant_id: int | None = None
    entity_id: int | None = None
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    run_at: datetime | None = None  # not before this time; now when None


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    name: str
    queue: str
    tenant_id: int | None
    entity_id: int | None
    target: str | None
    params: dict[str, Any]
    attempts: int
    created_at: datetime
    lock_held: bool = False
    preloaded: Any = None


# The statements that claim and finish jobs run for every batch a worker takes: they are built once, with
# bound parameters, because building and keying a statement costs more than the database's work for it. A
# parameter must not be named after a column: an UPDATE would also set that column to it.
JOBS = table_of(Job)
_NOW = bindparam("now", type_=JOBS.c.run_at.type)
_CLAIMED_COLUMNS = tuple(
    JOBS.c[name]
    for name in ("id", "name", "queue", "tenant_id", "entity_id", "target", "params", "attempts", "created_at")
)
_RUNNABLE = (JOBS.c.status == JobStatus.QUEUED, JOBS.c.run_at <= _NOW)


def _claim_statement(chosen: ColumnElement[bool]) -> Update:
    # Queued and due again in the UPDATE itself: on PostgreSQL a row another worker took between the choice
    # and the update is re-checked there, not taken twice.
    lease_until = bindparam("lease_ends", type_=JOBS.c.lease_until.type)
    return (
        update(JOBS)
        .where(chosen, *_RUNNABLE)
        .values(status=JobStatus.RUNNING, attempts=JOBS.c.attempts + 1, lease_until=lease_until, started_at=_NOW)
        .returning(*_CLAIMED_COLUMNS)
    )


_CLAIM_IDS = _claim_statement(JOBS.c.id.in_(bindparam("ids", expanding=True)))
_MARK_SUCCEEDED = (
    update(JOBS)
    .where(JOBS.c.id.in_(bindparam("ids", expanding=True)), JOBS.c.status == JobStatus.RUNNING)
    .values(status=JobStatus.SUCCEEDED, finished_at=_NOW, lease_until=None, last_error=None, dedup_key=None)
)


@functools.cache
def _claim_due_statement(dialect: str, *, by_queue: bool) -> Update:
    due = select(JOBS.c.id).where(*_RUNNABLE)
    if by_queue:
        due = due.where(JOBS.c.queue == bindparam("in_queue"))
    chosen = due.order_by(JOBS.c.run_at, JOBS.c.id).limit(bindparam("limit")).with_for_update(skip_locked=True)
    oldest = chosen.cte("due")
    if dialect == "postgresql":
        # Run once: PostgreSQL may otherwise re-run a plain subquery under the UPDATE, each run locking and
        # returning other rows, so one claim would take more than `limit`.
        oldest = oldest.prefix_with("MATERIALIZED")
    return _claim_statement(JOBS.c.id.in_(select(oldest.c.id)))


def _row_values(spec: JobSpec, now: datetime) -> dict[str, Any]:
    return {
        "name": spec.name,
        "queue": spec.queue,
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "max_attempts": spec.retry.max_attempts,
        "unique_until": now + spec.unique_for if spec.unique_for else None,
        "run_at": now,
        "sent_at": now,
        "created_at": now,
    }


async def release_expired_keys(session: AsyncSession, now: datetime) -> None:
    """Free de-duplication keys whose window has passed, so the same key can be queued again."""
    await session.execute(
        update(Job)
        .where(Job.unique_until <= now, Job.dedup_key.is_not(None))
        .values(dedup_key=None, unique_until=None)
        .execution_options(synchronize_session=False)
    )


async def enqueue(session: AsyncSession, spec: JobSpec, items: Sequence[JobItem], now: datetime) -> list[int]:
    """Insert ledger rows; a row whose de-duplication key is already held is silently skipped."""
    if not items:
        return []
    if spec.unique_for is not None:
        await release_expired_keys(session, now)
    base = _row_values(spec, now)
    rows = [
        base
        | {
            "tenant_id": item.tenant_id,
            "entity_id": item.entity_id,
            "target": item.target,
            "params": item.params,
            "dedup_key": spec.dedup_key(item.tenant_id, item.entity_id, item.target),
            "run_at": item.run_at or now,
            "sent_at": item.run_at or now,
        }
        for item in items
    ]
    dialect = dialect_of(session)
    statement = insert_or_ignore(dialect, Job, ["dedup_key"]).values(rows).returning(Job.id)
    return list((await session.scalars(statement)).all())


async def enqueue_for_entities(
    session: AsyncSession,
    spec: JobSpec,
    entity_ids: Select[Any],
    *,
    tenant_id: int,
    target: str,
    params: dict[str, Any],
    now: datetime,
) -> list[int]:
    """One ledger row per entity id the query yields, in a single INSERT … SELECT."""
    if spec.unique_for is not None:
        await release_expired_keys(session, now)
    ids = entity_ids.subquery()
    entity = ids.c[0]
    dedup: ColumnElement[Any] = literal(None, String)
    if spec.unique_for is not None:
        dedup = literal(f"{spec.name}:{tenant_id}:", String) + cast(entity, String) + literal(f":{target}", String)
    values = _row_values(spec, now) | {"tenant_id": tenant_id, "target": target, "params": params}
    columns = [literal(value, Job.__table__.c[name].type).label(name) for name, value in values.items()]
    source = select(*columns, entity.label("entity_id"), dedup.label("dedup_key")).where(true())
    dialect = dialect_of(session)
    statement = (
        insert_or_ignore(dialect, Job, ["dedup_key"])
        .from_select([*values, "entity_id", "dedup_key"], source)
        .returning(Job.id)
    )
    return list((await session.scalars(statement)).all())


def _claimed(rows: Sequence[Any]) -> list[ClaimedJob]:
    return [ClaimedJob(*row) for row in rows]


async def claim_key(session: AsyncSession, name: str, key: str, until: datetime, now: datetime) -> bool:
    """Record a one-off event under `key` until `until`; False when it was already recorded."""
    await release_expired_keys(session, now)
    row = _row_values(JobSpec(name=name, queue="-"), now) | {
        "status": JobStatus.SUCCEEDED,
        "dedup_key": key,
        "unique_until": until,
        "finished_at": now,
        "params": {},
    }
    statement = insert_or_ignore(dialect_of(session), Job, ["dedup_key"]).values(row).returning(Job.id)
    return (await session.scalar(statement)) is not None


async def claim(session: AsyncSession, job_ids: Sequence[int], now: datetime, lease: timedelta) -> list[ClaimedJob]:
    """Take the runnable rows among `job_ids`: queued and due. Others are left alone."""
    rows = await session.execute(_CLAIM_IDS, {"ids": list(job_ids), "now": now, "lease_ends": now + lease})
    return _claimed(rows.all())


async def claim_due(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int, queue: str | None = None
) -> list[ClaimedJob]:
    """Take up to `limit` due rows, oldest first, whatever messages were sent for them, in one statement."""
    statement = _claim_due_statement(dialect_of(session), by_queue=queue is not None)
    values: dict[str, Any] = {"now": now, "lease_ends": now + lease, "limit": limit}
    if queue is not None:
        values["in_queue"] = queue
    return _claimed((await session.execute(statement, values)).all())


async def mark_succeeded(session: AsyncSession, job_ids: Sequence[int], now: datetime) -> None:
    if job_ids:
        await session.execute(_MARK_SUCCEEDED, {"ids": list(job_ids), "now": now})


async def mark_retry(session: AsyncSession, job_id: int, error: str, run_at: datetime) -> None:
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.QUEUED, run_at=run_at, sent_at=run_at, lease_until=None, last_error=error)
        .execution_options(synchronize_session=False)
    )


async def mark_deferred(session: AsyncSession, job_id: int, run_at: datetime) -> None:
    """Put a running job back to wait until `run_at`; the run it gave up does not count as an attempt."""
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.QUEUED, run_at=run_at, sent_at=run_at, lease_until=None, attempts=Job.attempts - 1)
        .execution_options(synchronize_session=False)
    )


async def postpone(session: AsyncSession, run_at_by_job: dict[int, datetime]) -> list[int]:
    """Move waiting jobs to run later; returns the ids of those still waiting (one running or finished is
    left alone)."""
    moved: list[int] = []
    for job_id, run_at in run_at_by_job.items():
        result = await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.run_at < run_at)
            .values(run_at=run_at, sent_at=run_at)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            moved.append(job_id)
    return moved


async def mark_failed(session: AsyncSession, job_id: int, error: str, now: datetime) -> None:
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.FAILED, finished_at=now, lease_until=None, last_error=error, dedup_key=None)
        .execution_options(synchronize_session=False)
    )


def _by_queue(rows: Sequence[Any]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for job_id, queue in rows:
        grouped[queue].append(job_id)
    return dict(grouped)


async def recover(session: AsyncSession, now: datetime, resend_after: timedelta) -> dict[str, list[int]]:
    """Re-queue rows whose worker died (lease ran out) and pick rows whose message seems lost.

    Returns the ids to send again, by queue. A duplicate message is harmless: claims are conditional.
    """
    expired = await session.execute(
        update(Job)
        .where(Job.status == JobStatus.RUNNING, Job.lease_until < now)
        .values(status=JobStatus.QUEUED, run_at=now, sent_at=now, lease_until=None)
        .returning(Job.id, Job.queue)
        .execution_options(synchronize_session=False)
    )
    stale = await session.execute(
        update(Job)
        .where(Job.status == JobStatus.QUEUED, Job.run_at <= now, Job.sent_at < now - resend_after)
        .values(sent_at=now)
        .returning(Job.id, Job.queue)
        .execution_options(synchronize_session=False)
    )
    return _by_queue([*expired.all(), *stale.all()])


async def prune(session: AsyncSession, finished_before: datetime) -> int:
    """Delete succeeded and dead jobs finished before `finished_before`; failed ones stay until retried."""
    result = await session.execute(
        delete(Job)
        .where(Job.status.in_([JobStatus.SUCCEEDED, JobStatus.DEAD]), Job.finished_at < finished_before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def retry_failed(session: AsyncSession, now: datetime, name: str | None = None) -> dict[str, list[int]]:
    """Queue every failed job again with a fresh set of attempts."""
    statement = (
        update(Job)
        .where(Job.status == JobStatus.FAILED)
        .values(status=JobStatus.QUEUED, attempts=0, run_at=now, sent_at=now, finished_at=None)
        .returning(Job.id, Job.queue)
        .execution_options(synchronize_session=False)
    )
    if name is not None:
        statement = statement.where(Job.name == name)
    return _by_queue((await session.execute(statement)).all())


async def list_jobs(session: AsyncSession, status: str | None = None, limit: int = 50) -> list[Job]:
    statement = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(Job.status == status)
    return list((await session.scalars(statement)).all())


async def count_by_status(session: AsyncSession, job_ids: Sequence[int] | None = None) -> dict[str, int]:
    statement = select(Job.status, func.count()).group_by(Job.status)
    if job_ids is not None:
        statement = statement.where(Job.id.in_(job_ids))
    return {status: count for status, count in (await session.execute(statement)).all()}


async def count_since(session: AsyncSession, since_id: int, name: str) -> dict[str, int]:
    """Jobs named `name` created after row `since_id`, by status (for progress bars)."""
    statement = select(Job.status, func.count()).where(Job.id > since_id, Job.name == name).group_by(Job.status)
    return {status: count for status, count in (await session.execute(statement)).all()}


async def queued_ids(session: AsyncSession, name: str, tenant_id: int, targets: Sequence[str]) -> list[int]:
    """Queued jobs named `name` of one tenant for these targets, oldest first."""
    statement = select(Job.id).where(
        Job.name == name, Job.tenant_id == tenant_id, Job.target.in_(targets), Job.status == JobStatus.QUEUED
    )
    return list((await session.scalars(statement.order_by(Job.id))).all())


async def jobs_for_entities(session: AsyncSession, name: str, entity_ids: Sequence[int]) -> dict[int, int]:
    """Entity id -> id of the newest job named `name` for it."""
    found: dict[int, int] = {}
    for start in range(0, len(entity_ids), 1000):
        chunk = list(entity_ids[start : start + 1000])
        statement = select(Job.entity_id, func.max(Job.id)).where(Job.name == name, Job.entity_id.in_(chunk))
        rows = await session.execute(statement.group_by(Job.entity_id))
        found.update((entity_id, job_id) for entity_id, job_id in rows if entity_id is not None)
    return found


async def max_id(session: AsyncSession) -> int:
    return (await session.scalar(select(func.max(Job.id)))) or 0


def pending_filter() -> ColumnElement[bool]:
    return or_(Job.status == JobStatus.QUEUED, Job.status == JobStatus.RUNNING)
