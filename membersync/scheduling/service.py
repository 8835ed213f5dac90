"""The tick and manual dispatch: both write the same `sync_runs` row and queue the same `member.sync` jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.db.upsert import insert_or_ignore
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.jobs import ledger, outbox
from membersync.models import Member, SyncRun, Tenant
from membersync.provider.base import SyncProvider
from membersync.runtime import Runtime
from membersync.scheduling.plan import TICK_INTERVAL, is_due, window_start
from membersync.tenant import service as tenant_service

logger = structlog.get_logger("membersync.scheduling")


@dataclass
class TickReport:
    window: datetime
    ran: bool
    dispatched: dict[str, int] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return sum(self.dispatched.values())


async def _load_run(session: AsyncSession, tenant: Tenant, provider: str, now: datetime) -> SyncRun:
    values = {
        "tenant_id": tenant.id,
        "provider": provider,
        "last_dispatch_count": 0,
        "created_at": now,
        "updated_at": now,
    }
    await session.execute(insert_or_ignore(dialect_of(session), SyncRun, ["tenant_id", "provider"]).values(values))
    run = await session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant.id, SyncRun.provider == provider))
    assert run is not None
    return run


async def _take_dispatch(session: AsyncSession, run: SyncRun, now: datetime, trigger: str) -> bool:
    """Compare-and-set `last_dispatched_at`: of two dispatchers that read the same row, one wins."""
    previous = run.last_dispatched_at
    unchanged = SyncRun.last_dispatched_at.is_(None) if previous is None else SyncRun.last_dispatched_at == previous
    result = await session.execute(
        update(SyncRun)
        .where(SyncRun.id == run.id, unchanged)
        .values(last_dispatched_at=now, last_trigger=trigger, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def dispatch_provider(
    runtime: Runtime, tenant: Tenant, provider: SyncProvider, *, trigger: str, force: bool = False, only_if_due: bool
) -> int | None:
    """Queue a `member.sync` per member in scope and stamp the run; None when not due or taken by another."""
    async with runtime.unit_of_work() as session:
        now = runtime.clock.now()
        run = await _load_run(session, tenant, provider.name, now)
        if only_if_due and not is_due(run.last_dispatched_at, provider.refresh_interval, now):
            return None
        if not await _take_dispatch(session, run, now, trigger):
            return None
        scope = provider.members_to_sync(tenant).where(Member.tenant_id == tenant.id).with_only_columns(Member.id)
        params = {"kind": trigger, "force": force} if force else {"kind": trigger}
        job_ids = await ledger.enqueue_for_entities(
            session, MEMBER_SYNC, scope, tenant_id=tenant.id, target=provider.name, params=params, now=now
        )
        await session.execute(update(SyncRun).where(SyncRun.id == run.id).values(last_dispatch_count=len(job_ids)))
        outbox.defer(session, MEMBER_SYNC.queue, job_ids)
    logger.info("sync.dispatched", tenant=tenant.slug, provider=provider.name, trigger=trigger, jobs=len(job_ids))
    return len(job_ids)


async def _claim_window(runtime: Runtime, window: datetime) -> bool:
    async with runtime.unit_of_work() as session:
        key = f"scheduling.tick:{window.isoformat()}"
        return await ledger.claim_key(session, "scheduling.tick", key, window + TICK_INTERVAL, runtime.clock.now())


async def run_tick(runtime: Runtime) -> TickReport:
    """Dispatch every due provider of every tenant, once per 5-minute window however many schedulers run."""
    window = window_start(runtime.clock.now())
    if not await _claim_window(runtime, window):
        return TickReport(window=window, ran=False)
    report = TickReport(window=window, ran=True)
    async with runtime.database.read_sessions() as session:
        tenants = await tenant_service.list_tenants(session)
    for tenant in tenants:
        for provider in runtime.providers.available_for_tenant(tenant):
            count = await dispatch_provider(runtime, tenant, provider, trigger="scheduled", only_if_due=True)
            if count is not None:
                report.dispatched[f"{tenant.slug}/{provider.name}"] = count
    return report


async def sync_now(runtime: Runtime, tenant: Tenant, providers: list[SyncProvider], *, force: bool) -> dict[str, int]:
    """The manual run (`membersync sync`): dispatch now, whatever the due-check says."""
    dispatched: dict[str, int] = {}
    for provider in providers:
        count = await dispatch_provider(runtime, tenant, provider, trigger="manual", force=force, only_if_due=False)
        dispatched[provider.name] = count or 0
    return dispatched
