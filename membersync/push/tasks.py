"""`push.send_batch`: one batch, one request when the destination's budget allows, retried on its schedule."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.destinations.contract import PushDestination, PushReply, Subscriber, UnknownDestination
from membersync.http.client import RetryPolicy, retry_delay
from membersync.jobs.ledger import ClaimedJob
from membersync.jobs.policy import describe_error
from membersync.jobs.queue import USER_SYNC_QUEUE
from membersync.jobs.runner import DeferJob, PermanentJobError, RetryJobAt
from membersync.jobs.spec import Finalizer, JobSpec, RetryStrategy
from membersync.push import hold, plan, repository
from membersync.runtime import Runtime

logger = structlog.get_logger("membersync.push")

# No lock: a batch has one job row, and the ledger's claim hands a row to one worker at a time.
PUSH_BATCH = JobSpec(
    name="push.send_batch", queue=USER_SYNC_QUEUE, retry=RetryStrategy(max_attempts=3, delay=timedelta(seconds=60))
)
# A destination's Retry-After is honoured between these bounds: 0 must not become a tight loop.
RETRY_AFTER = RetryPolicy(min_retry_after=5.0, max_retry_after=24 * 3600.0)


class PushFailed(Exception):
    """A batch request that was not accepted."""


@dataclass(frozen=True)
class Sent:
    request_id: str
    reply: PushReply
    status_code: int | None
    duration_ms: float


def install(runtime: Runtime) -> None:
    """Register the job."""
    runtime.jobs.add(PUSH_BATCH, partial(send_batch, runtime))


async def send_batch(runtime: Runtime, job: ClaimedJob) -> Finalizer | None:
    """Send the batch `job.entity_id` once, if the destination's budget allows; else put it off. An accepted
    batch is recorded with the job's own success, in one transaction."""
    destination = _destination(runtime, job)
    batch_id = _batch_id(job)
    async with runtime.database.read_connection() as connection:
        read_at = runtime.clock.now()
        batch = await repository.batch_to_send(connection, batch_id, job.tenant_id)
    if batch is None:
        raise PermanentJobError(f"push batch {batch_id} no longer exists")
    if batch.status == "succeeded":
        return None
    subscribers = batch.subscribers
    log = logger.bind(batch_id=batch_id, destination=destination.name, attempt=job.attempts, job_id=job.id)
    await _take_budget(runtime, destination, batch_id, log)
    sent = await _send(runtime, destination, batch.idempotency_key, subscribers, log)
    if sent.reply.accepted:
        return partial(_record_accepted, job, len(subscribers), sent, read_at, log)
    retry_at = _retry_after(runtime, job, sent)
    await _record_refused(runtime, job, destination, len(subscribers), sent, retry_at, log)
    _raise_refused(job, sent, retry_at, log)
    return None


def _destination(runtime: Runtime, job: ClaimedJob) -> PushDestination:
    try:
        return runtime.destinations.get(job.target or "")
    except UnknownDestination as error:
        raise PermanentJobError(str(error)) from None


def _batch_id(job: ClaimedJob) -> int:
    if job.entity_id is None:
        raise PermanentJobError("a push job names no batch")
    return job.entity_id


async def _take_budget(runtime: Runtime, destination: PushDestination, batch_id: int, log: Any) -> None:
    """One request's worth of the destination's budget, or the batch is put off to when the budget frees
    (or, when other batches are due by then, after them)."""
    admission = await runtime.limiter.acquire(f"push:{destination.name}", destination.rate_limit, runtime.clock.now())
    if admission.allowed:
        return
    assert admission.retry_at is not None
    async with runtime.unit_of_work() as session:
        crowded = await repository.others_due_by(session, destination.name, admission.retry_at, batch_id)
        last = await repository.last_scheduled(session, destination.name)
        at = plan.slot_after_denial(admission.retry_at, crowded, last, destination.rate_limit.spacing)
        await repository.set_batch(session, batch_id, scheduled_at=at)
    log.info("push.waiting_for_budget", budget_frees_at=admission.retry_at.isoformat(), until=at.isoformat())
    raise DeferJob(f"no budget left for {destination.name}; next slot {at.isoformat()}", at)


async def _send(
    runtime: Runtime, destination: PushDestination, idempotency_key: str, subscribers: list[Subscriber], log: Any
) -> Sent:
    request_id = uuid.uuid4().hex
    headers = destination.headers() | {"Idempotency-Key": idempotency_key, "X-Request-ID": request_id}
    log.info("push.request_sent", request_id=request_id, size=len(subscribers), url=destination.url())
    started = time.perf_counter()
    status: int | None = None
    try:
        response = await runtime.http.send_once(
            "POST",
            destination.url(),
            json=destination.body(subscribers),
            headers=headers,
            timeout=runtime.settings.push_timeout_seconds,
        )
        status, reply = response.status_code, destination.read(response)
    except httpx.HTTPError as error:
        reply = PushReply(False, detail=describe_error(error))
    duration_ms = (time.perf_counter() - started) * 1000
    log.info(
        "push.response",
        request_id=request_id,
        status=status,
        duration_ms=round(duration_ms, 1),
        remote_request_id=reply.remote_request_id,
        accepted=reply.accepted,
    )
    return Sent(request_id, reply, status, duration_ms)


def _is_last(job: ClaimedJob, sent: Sent) -> bool:
    return sent.reply.permanent or job.attempts >= PUSH_BATCH.retry.max_attempts


async def _record_accepted(
    job: ClaimedJob,
    count: int,
    sent: Sent,
    read_at: datetime,
    log: Any,
    session: AsyncSession,
    now: datetime,
) -> None:
    """The request in `push_attempts` and the batch succeeded, its members pushed as of when they were read: a
    change made since is pushed next time."""
    batch_id = _batch_id(job)
    await repository.add_attempt(session, _attempt_row(batch_id, job, count, sent, "accepted", now))
    state = {"attempts": job.attempts, "last_status_code": sent.status_code, "updated_at": now, "last_error": None}
    outcome = {"status": "succeeded", "sent_count": count, "finished_at": now, "members_read_at": read_at}
    await repository.set_batch(session, batch_id, **state, **outcome)
    log.info("push.batch_succeeded", request_id=sent.request_id)


async def _record_refused(
    runtime: Runtime,
    job: ClaimedJob,
    destination: PushDestination,
    count: int,
    sent: Sent,
    retry_at: datetime | None,
    log: Any,
) -> None:
    """The request in `push_attempts` and the batch retrying or, after its last try, failed. When the
    destination named a time to come back, its other batches due before then wait for it too."""
    now = runtime.clock.now()
    batch_id = _batch_id(job)
    outcome = "failed" if _is_last(job, sent) else "retry"
    state: dict[str, Any] = {"attempts": job.attempts, "last_status_code": sent.status_code, "updated_at": now}
    state |= {"status": "failed" if outcome == "failed" else "retrying", "last_error": _error_text(sent)[:2000]}
    if outcome == "failed":
        state["finished_at"] = now
    elif retry_at is not None:
        state["scheduled_at"] = retry_at
    async with runtime.unit_of_work() as session:
        await repository.add_attempt(session, _attempt_row(batch_id, job, count, sent, outcome, now))
        await repository.set_batch(session, batch_id, **state)
        if retry_at is not None:
            spacing = destination.rate_limit.spacing
            held = await hold.hold_back(session, destination.name, retry_at, spacing, batch_id, PUSH_BATCH.queue)
            log.warning("push.destination_paused", until=retry_at.isoformat(), batches_held_back=held)


def _attempt_row(batch_id: int, job: ClaimedJob, count: int, sent: Sent, outcome: str, now: datetime) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "attempt": job.attempts,
        "request_id": sent.request_id,
        "remote_request_id": (sent.reply.remote_request_id or "")[:255] or None,
        "subscribers": count,
        "status_code": sent.status_code,
        "duration_ms": round(sent.duration_ms, 3),
        "outcome": outcome,
        "error": None if sent.reply.accepted else _error_text(sent)[:2000],
        "started_at": now,
    }


def _error_text(sent: Sent) -> str:
    outcome = "no response" if sent.status_code is None else f"HTTP {sent.status_code}"
    return f"{outcome}: {sent.reply.detail}" if sent.reply.detail else outcome


def _retry_after(runtime: Runtime, job: ClaimedJob, sent: Sent) -> datetime | None:
    """When the destination asked to be tried again (its `Retry-After`, within bounds), unless this was the
    batch's last try."""
    if sent.reply.retry_after is None or _is_last(job, sent):
        return None
    delay = retry_delay(RETRY_AFTER, job.attempts, sent.reply.retry_after, now=runtime.clock.now())
    return runtime.clock.now() + timedelta(seconds=delay)


def _raise_refused(job: ClaimedJob, sent: Sent, retry_at: datetime | None, log: Any) -> None:
    message = _error_text(sent)
    if _is_last(job, sent):
        log.error("push.batch_failed", request_id=sent.request_id, error=message, permanent=sent.reply.permanent)
        raise PermanentJobError(message)
    if retry_at is not None:
        log.warning("push.retry", request_id=sent.request_id, error=message, at=retry_at.isoformat(), retry_after=True)
        raise RetryJobAt(message, retry_at)
    log.warning("push.retry", request_id=sent.request_id, error=message)
    raise PushFailed(message)
