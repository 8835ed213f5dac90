"""Syncing a member: atomic side effects, freshness, the login path, and the shared lock."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from membersync.clock import FrozenClock
from membersync.freshness.service import SyncOutcome, SyncRequest, ensure_fresh_for_login, sync_member
from membersync.locks import sync_lock_key
from membersync.models import Entitlement, ExternalProfile, Member, MemberMeta, SyncOperation
from membersync.provider.context import SyncContext
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from tests.factories import make_member, make_tenant
from tests.races import race_login_and_worker


async def _count(runtime: Runtime, model: type[object]) -> int:
    async with runtime.database.read_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _profile(runtime: Runtime, member_id: int, provider: str = "crm") -> ExternalProfile | None:
    async with runtime.database.read_sessions() as session:
        statement = select(ExternalProfile).where(
            ExternalProfile.member_id == member_id, ExternalProfile.provider == provider
        )
        return await session.scalar(statement)


async def _record_everything(member: Member, ctx: SyncContext) -> None:
    await ctx.save_profile(member, {"tier": "gold"}, external_id="crm-1")
    await ctx.set_meta(member, "total_donations", 125)
    await ctx.grant(member, "gold-lounge")


async def test_sync_writes_profile_meta_and_entitlements(runtime: Runtime) -> None:
    provider = FakeSyncProvider("crm")
    provider.on_sync = _record_everything
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    request = SyncRequest(tenant=tenant, member=member, provider=provider, kind="manual")
    assert await sync_member(runtime, request) == SyncOutcome.SYNCED
    assert await sync_member(runtime, request) == SyncOutcome.SYNCED
    profile = await _profile(runtime, member.id)
    assert profile is not None
    assert (profile.data, profile.external_id, profile.synced_at) == ({"tier": "gold"}, "crm-1", runtime.clock.now())
    assert (await _count(runtime, MemberMeta), await _count(runtime, Entitlement)) == (1, 1)
    assert await _count(runtime, SyncOperation) == 2


async def test_a_provider_raising_part_way_leaves_nothing_written(runtime: Runtime) -> None:
    provider = FakeSyncProvider("crm")

    async def half_then_fail(member: Member, ctx: SyncContext) -> None:
        await _record_everything(member, ctx)
        raise ValueError("response truncated")

    provider.on_sync = half_then_fail
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    with pytest.raises(Exception, match="response truncated"):
        await sync_member(runtime, SyncRequest(tenant=tenant, member=member, provider=provider, kind="manual"))
    assert (await _count(runtime, MemberMeta), await _count(runtime, Entitlement)) == (0, 0)
    profile = await _profile(runtime, member.id)
    assert profile is not None
    assert (profile.status, profile.synced_at, profile.data) == ("failed", None, {})
    assert "response truncated" in (profile.last_error or "")


async def test_revoke_all_removes_only_this_providers_entitlements(runtime: Runtime) -> None:
    crm, other = FakeSyncProvider("crm"), FakeSyncProvider("other")
    crm.on_sync = _record_everything
    other.on_sync = _record_everything
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    for provider in (crm, other):
        await sync_member(runtime, SyncRequest(tenant=tenant, member=member, provider=provider, kind="manual"))

    async def lapsed(member: Member, ctx: SyncContext) -> None:
        await ctx.revoke_all(member)

    crm.on_sync = lapsed
    await sync_member(runtime, SyncRequest(tenant=tenant, member=member, provider=crm, kind="manual"))
    async with runtime.database.read_sessions() as session:
        sources = (await session.scalars(select(Entitlement.source_provider))).all()
    assert list(sources) == ["other"]


async def test_plain_function_providers_run_in_a_thread(runtime: Runtime) -> None:
    provider = FakeSyncProvider("crm")
    seen: list[str] = []

    def blocking(member: Member, ctx: SyncContext) -> None:
        seen.append(member.email)

    provider.on_sync = blocking
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    await sync_member(runtime, SyncRequest(tenant=tenant, member=member, provider=provider, kind="manual"))
    assert seen == ["ada@example.org"]


async def test_login_syncs_only_stale_login_bound_providers(runtime: Runtime, clock: FrozenClock) -> None:
    login_bound = FakeSyncProvider("crm", login_age=timedelta(minutes=30))
    background = FakeSyncProvider("warehouse")
    gated = FakeSyncProvider("gated", login_age=timedelta(minutes=30), available_for_tenant=False)
    for provider in (login_bound, background, gated):
        runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    assert await ensure_fresh_for_login(runtime, tenant, member) == {"crm": SyncOutcome.SYNCED}
    clock.advance(minutes=29)
    assert await ensure_fresh_for_login(runtime, tenant, member) == {"crm": SyncOutcome.FRESH}
    clock.advance(minutes=1)
    assert await ensure_fresh_for_login(runtime, tenant, member) == {"crm": SyncOutcome.SYNCED}
    assert (login_bound.sync_call_count, background.sync_call_count, gated.sync_call_count) == (2, 0, 0)


async def test_login_never_raises_when_a_provider_fails(runtime: Runtime) -> None:
    provider = FakeSyncProvider("crm", login_age=timedelta(minutes=30))

    def broken(member: Member, ctx: SyncContext) -> None:
        raise ConnectionError("CRM unreachable")

    provider.on_sync = broken
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    assert await ensure_fresh_for_login(runtime, tenant, member) == {"crm": SyncOutcome.FAILED}


async def test_login_yields_when_the_lock_stays_busy(runtime: Runtime) -> None:
    runtime.settings.login_lock_wait_seconds = 0.2
    provider = FakeSyncProvider("crm", login_age=timedelta(minutes=30))
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    key = sync_lock_key(tenant.id, member.id, "crm")
    async with runtime.locks.hold(key, wait=0, ttl=60) as taken:
        assert taken
        started = time.monotonic()
        outcome = await ensure_fresh_for_login(runtime, tenant, member)
        assert time.monotonic() - started < 2
    assert outcome == {"crm": SyncOutcome.LOCKED}
    assert provider.sync_call_count == 0


async def test_login_and_worker_racing_never_sync_twice_at_once(runtime: Runtime) -> None:
    await race_login_and_worker(runtime)


async def test_login_syncs_stale_providers_concurrently(runtime: Runtime) -> None:
    both_in_flight = asyncio.Barrier(2)

    async def meet(member: Member, ctx: SyncContext) -> None:
        await asyncio.wait_for(both_in_flight.wait(), timeout=2)

    for name in ("crm", "donors"):
        provider = FakeSyncProvider(name, login_age=timedelta(minutes=30))
        provider.on_sync = meet
        runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    outcomes = await ensure_fresh_for_login(runtime, tenant, member)
    assert outcomes == {"crm": SyncOutcome.SYNCED, "donors": SyncOutcome.SYNCED}


async def test_a_sync_links_the_member_in_the_tracker_and_a_failure_is_counted(runtime: Runtime) -> None:
    provider = FakeSyncProvider("crm")
    provider.on_sync = _record_everything
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    request = SyncRequest(tenant=tenant, member=member, provider=provider, kind="manual")
    assert await sync_member(runtime, request) == SyncOutcome.SYNCED
    async with runtime.database.read_sessions() as session:
        found = await runtime.tracker.find_by_external_id(session, tenant.id, "crm-1", "crm", "member")
        assert found is not None
        assert found.entity_id == str(member.id)

    async def fail(member: Member, ctx: SyncContext) -> None:
        raise ValueError("upstream said no")

    provider.on_sync = fail
    with pytest.raises(Exception, match="upstream said no"):
        await sync_member(runtime, request)
    async with runtime.database.read_sessions() as session:
        [link] = await runtime.tracker.links(session, member)
    assert (link.status, link.external_id, link.retry_count) == ("failed", "crm-1", 1)
    assert "upstream said no" in (link.last_error or "")


async def test_a_second_member_claiming_a_linked_external_id_fails_alone(runtime: Runtime) -> None:
    provider = FakeSyncProvider("crm")
    provider.on_sync = _record_everything
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    first = await make_member(runtime, tenant, "first@example.org")
    second = await make_member(runtime, tenant, "second@example.org")
    assert await sync_member(runtime, SyncRequest(tenant, first, provider, kind="manual")) == SyncOutcome.SYNCED
    with pytest.raises(Exception, match=f"member {first.id}.*member {second.id}"):
        await sync_member(runtime, SyncRequest(tenant, second, provider, kind="manual"))
    assert await _count(runtime, MemberMeta) == 1
