"""Syncing one member with one provider, under the member+provider lock, from a job or the login path."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.errors import LockNotAcquired
from membersync.freshness.rules import is_stale, stale_for_login
from membersync.jobs.policy import describe_error
from membersync.jobs.spec import Finalizer
from membersync.locks import sync_lock_key
from membersync.models import ExternalProfile, Member, Tenant
from membersync.provider import repository
from membersync.provider.base import SyncProvider
from membersync.provider.context import SyncContext
from membersync.provider.writes import SyncWrites
from membersync.runtime import Runtime

logger = structlog.get_logger("membersync.sync")


class SyncOutcome(StrEnum):
    SYNCED = "synced"
    FRESH = "fresh"
    LOCKED = "locked"
    FAILED = "failed"


class ProviderSyncError(Exception):
    """A provider's `sync()` raised; the original error is chained."""

    def __init__(self, provider: str, error: BaseException) -> None:
        super().__init__(f"provider {provider!r} failed: {describe_error(error)}")
        self.provider = provider


@dataclass(frozen=True)
class SyncRequest:
    tenant: Tenant
    member: Member
    provider: SyncProvider
    kind: str
    max_age: timedelta | None = None
    synced_since: datetime | None = None
    force: bool = False
    job_id: int | None = None
    lock_wait: float = 5.0


async def load_synced_at(runtime: Runtime, member_id: int, provider: str) -> datetime | None:
    async with runtime.database.read_sessions() as session:
        statement = select(ExternalProfile.synced_at).where(
            ExternalProfile.member_id == member_id, ExternalProfile.provider == provider
        )
        return await session.scalar(statement)


async def _call_provider(provider: SyncProvider, member: Member, ctx: SyncContext) -> None:
    if inspect.iscoroutinefunction(provider.sync):
        await provider.sync(member, ctx)
        return
    result = await asyncio.to_thread(provider.sync, member, ctx)
    if inspect.isawaitable(result):
        await result


async def run_provider(runtime: Runtime, request: SyncRequest) -> SyncWrites:
    """Call the provider and return what it recorded; a failure is recorded and raised as ProviderSyncError."""
    member, name = request.member, request.provider.name
    started = runtime.clock.now()
    writes = SyncWrites(
        tenant_id=member.tenant_id,
        member_id=member.id,
        provider=name,
        kind=request.kind,
        started_at=started,
        job_id=request.job_id,
    )
    async with runtime.database.read_sessions() as read_session:
        ctx = SyncContext(
            tenant=request.tenant,
            provider=name,
            session=read_session,
            http=runtime.http,
            clock=runtime.clock,
            writes=writes,
        )
        try:
            await _call_provider(request.provider, member, ctx)
        except Exception as error:
            await _record_failure(runtime, request, error, started)
            raise ProviderSyncError(name, error) from error
    return writes


async def prepare_sync(runtime: Runtime, request: SyncRequest) -> Finalizer | None:
    """Run the provider unless the data is fresh; returns the writes to apply, or None when fresh.

    The caller must hold the member+provider lock until the writes are committed.
    """
    if not request.force and await _already_fresh(runtime, request):
        return None
    return await run_provider(runtime, request)


async def _record(
    session: AsyncSession, request: SyncRequest, status: str, started: datetime, now: datetime, error: str | None = None
) -> None:
    await repository.record_operation(
        session,
        request.member,
        request.provider.name,
        kind=request.kind,
        status=status,
        started_at=started,
        finished_at=now,
        job_id=request.job_id,
        error=error,
    )


async def _record_failure(runtime: Runtime, request: SyncRequest, error: BaseException, started: datetime) -> None:
    text = describe_error(error)
    async with runtime.unit_of_work() as session:
        now = runtime.clock.now()
        await repository.record_profile_failure(session, request.member, request.provider.name, text, now)
        await runtime.tracker.mark_failed(session, request.member, request.provider.name, text, now)
        await _record(session, request, "failed", started, now, text)


async def sync_member(runtime: Runtime, request: SyncRequest) -> SyncOutcome:
    """Sync one member with one provider unless fresh; never two at once for the same pair.

    Takes the member+provider lock (waiting up to `request.lock_wait`), re-checks freshness inside it
    unless forced, runs the provider, and applies what it recorded in one transaction.
    Raises `ProviderSyncError` when the provider fails and `LockNotAcquired` when the lock stays busy.
    """
    key = sync_lock_key(request.tenant.id, request.member.id, request.provider.name)
    async with runtime.locks.hold(key, wait=request.lock_wait, ttl=runtime.settings.lock_ttl_seconds) as taken:
        if not taken:
            raise LockNotAcquired(f"sync of member {request.member.id} with {request.provider.name!r} is in progress")
        finalize = await prepare_sync(runtime, request)
        if finalize is None:
            return SyncOutcome.FRESH
        async with runtime.unit_of_work() as session:
            await finalize(session, runtime.clock.now())
    return SyncOutcome.SYNCED


async def _already_fresh(runtime: Runtime, request: SyncRequest) -> bool:
    if request.max_age is None and request.synced_since is None:
        return False
    synced_at = await load_synced_at(runtime, request.member.id, request.provider.name)
    if synced_at is None:
        return False
    if request.synced_since is not None and synced_at >= request.synced_since:
        return True
    return request.max_age is not None and not is_stale(synced_at, request.max_age, runtime.clock.now())


def _login_ages(runtime: Runtime, tenant: Tenant) -> dict[str, timedelta]:
    return {
        provider.name: provider.max_age_on_login
        for provider in runtime.providers.available_for_tenant(tenant)
        if provider.max_age_on_login is not None
    }


async def ensure_fresh_for_login(runtime: Runtime, tenant: Tenant, member: Member) -> dict[str, SyncOutcome]:
    """Sync inline every login-bound provider whose profile is missing or older than its bound.

    Never raises: provider errors are logged as warnings, infrastructure errors as errors, and a
    provider whose lock stays busy for the login wait is skipped.
    """
    ages = _login_ages(runtime, tenant)
    if not ages:
        return {}
    try:
        async with runtime.database.read_connection() as connection:
            synced = await repository.synced_at_by_provider(connection, member.id, list(ages))
    except Exception:
        logger.exception("login.freshness_check_failed", member_id=member.id)
        return {}
    outcomes = {name: SyncOutcome.FRESH for name in ages}
    stale = stale_for_login(ages, synced, runtime.clock.now())
    # Providers are independent: the login waits for the slowest one, not for their sum.
    results = await asyncio.gather(*(_sync_for_login(runtime, tenant, member, name, ages[name]) for name in stale))
    outcomes.update(zip(stale, results, strict=True))
    return outcomes


async def _sync_for_login(
    runtime: Runtime, tenant: Tenant, member: Member, name: str, max_age: timedelta
) -> SyncOutcome:
    request = SyncRequest(
        tenant=tenant,
        member=member,
        provider=runtime.providers.get(name),
        kind="login",
        max_age=max_age,
        lock_wait=runtime.settings.login_lock_wait_seconds,
    )
    try:
        return await sync_member(runtime, request)
    except ProviderSyncError as error:
        logger.warning("login.sync_failed", member_id=member.id, provider=name, error=str(error))
        return SyncOutcome.FAILED
    except LockNotAcquired:
        logger.warning("login.sync_skipped_lock_busy", member_id=member.id, provider=name)
        return SyncOutcome.LOCKED
    except Exception:
        logger.exception("login.sync_infrastructure_error", member_id=member.id, provider=name)
        return SyncOutcome.FAILED
