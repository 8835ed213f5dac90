"""Starting a push: select the members, skip those without a usable email, cut batches, queue one job each."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.destinations.contract import PushDestination
from membersync.identity.normalize import FieldRejected, normalize_email
from membersync.jobs import ledger, outbox
from membersync.jobs.ledger import JobItem
from membersync.models import PushBatch
from membersync.push import plan, repository
from membersync.push.tasks import PUSH_BATCH

logger = structlog.get_logger("membersync.push")
NO_EMAIL = "no email"


@dataclass(frozen=True)
class PushRun:
    """What one push queued: how many members, skipped why, in which batches, due when."""

    run_id: str
    destination: str
    selected: int
    queued: int
    skipped: dict[str, int]
    batch_ids: list[int] = field(default_factory=list)
    first_due: datetime | None = None
    last_due: datetime | None = None


async def start_push(
    session: AsyncSession,
    destination: PushDestination,
    tenant_id: int,
    now: datetime,
    *,
    since: datetime | None = None,
) -> PushRun:
    """Queue the tenant's changed members for `destination` in batches, one `push.send_batch` job each, due
    one budget slot apart after the batches already waiting. The caller's unit of work commits and sends."""
    run_id = uuid.uuid4().hex[:16]
    selection = destination.select(repository.members_to_push(tenant_id, destination.name, since))
    rows = [(member_id, email) for member_id, email in await session.execute(selection)]
    sendable, skipped = _sendable(rows)
    batches = plan.cut(sendable, destination.batch_size)
    spacing = destination.rate_limit.spacing
    start = plan.first_slot(now, await repository.last_scheduled(session, destination.name), spacing)
    due = plan.schedule(len(batches), start, spacing)
    stored = [
        _batch(tenant_id, destination.name, run_id, index, ids, due[index], now) for index, ids in enumerate(batches)
    ]
    await repository.add_batches(session, stored, batches)
    await _enqueue(session, stored, now)
    batch_ids = [batch.id for batch in stored]
    first_due, last_due = (due[0], due[-1]) if due else (None, None)
    run = PushRun(run_id, destination.name, len(rows), len(sendable), skipped, batch_ids, first_due, last_due)
    _log_run(run, tenant_id)
    return run


def _sendable(rows: Sequence[tuple[int, str | None]]) -> tuple[list[int], dict[str, int]]:
    sendable: list[int] = []
    skipped: Counter[str] = Counter()
    for member_id, email in rows:
        reason = skip_reason(email)
        if reason is None:
            sendable.append(member_id)
        else:
            skipped[reason] += 1
    return sendable, dict(skipped)


def skip_reason(email: str | None) -> str | None:
    """Why a member cannot be pushed (no email, or one that does not validate), or None."""
    if not email:
        return NO_EMAIL
    try:
        normalize_email(email)
    except FieldRejected as error:
        return f"invalid email: {error}"
    return None


def _batch(
    tenant_id: int, destination: str, run_id: str, index: int, ids: list[int], due: datetime, now: datetime
) -> PushBatch:
    return PushBatch(
        tenant_id=tenant_id,
        destination=destination,
        run_id=run_id,
        sequence=index + 1,
        status="queued",
        member_count=len(ids),
        idempotency_key=uuid.uuid4().hex,
        scheduled_at=due,
        created_at=now,
        updated_at=now,
    )


async def _enqueue(session: AsyncSession, batches: list[PushBatch], now: datetime) -> None:
    items = [JobItem(b.tenant_id, b.id, b.destination, run_at=b.scheduled_at) for b in batches]
    await ledger.enqueue(session, PUSH_BATCH, items, now)
    # Matched by batch id, not by position: a multi-row RETURNING promises no order.
    jobs = await ledger.jobs_for_entities(session, PUSH_BATCH.name, [b.id for b in batches])
    for batch in batches:
        batch.job_id = jobs[batch.id]
        eta = batch.scheduled_at if batch.scheduled_at > now else None
        outbox.defer(session, PUSH_BATCH.queue, [batch.job_id], eta=eta)


def _log_run(run: PushRun, tenant_id: int) -> None:
    logger.info(
        "push.batches_created",
        run_id=run.run_id,
        tenant_id=tenant_id,
        destination=run.destination,
        members=run.selected,
        queued=run.queued,
        skipped=sum(run.skipped.values()),
        batches=len(run.batch_ids),
        first_batch_id=run.batch_ids[0] if run.batch_ids else None,
        first_due=run.first_due.isoformat() if run.first_due else None,
        last_due=run.last_due.isoformat() if run.last_due else None,
    )
    for reason, count in sorted(run.skipped.items()):
        logger.warning("push.members_skipped", run_id=run.run_id, reason=reason, count=count)
