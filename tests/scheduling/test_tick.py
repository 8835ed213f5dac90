"""The tick and manual dispatch, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import Select, select

from membersync.assembly import assemble
from membersync.clock import FrozenClock
from membersync.config import Settings
from membersync.jobs.queue import InMemoryQueue
from membersync.models import Job, Member, SyncRun
from membersync.provider.base import BaseSyncProvider
from membersync.runtime import Runtime
from membersync.scheduling.service import dispatch_provider, run_tick, sync_now
from membersync.testing import FakeSyncProvider
from tests.factories import make_member, make_members, make_tenant


def _active_within(days: int) -> FakeSyncProvider:
    provider = FakeSyncProvider("crm", refresh=timedelta(hours=6))
    base = BaseSyncProvider()

    def members(_tenant: object) -> object:
        base.clock = provider.clock
        return base.members_logged_in_within(days)

    provider.members_query = members  # type: ignore[assignment]
    return provider


def _everyone(_tenant: object = None) -> Select[Member]:
    return select(Member)


async def _run(runtime: Runtime, tenant_id: int) -> SyncRun:
    async with runtime.database.read_sessions() as session:
        run = await session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant_id))
        assert run is not None
        return run


async def test_tick_dispatches_members_in_scope_and_respects_the_interval(
    runtime: Runtime, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    runtime.providers.register(_active_within(30))
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 7, last_active_at=clock.now() - timedelta(days=2))
    dormant = await make_member(runtime, tenant, "dormant@example.org")
    async with runtime.unit_of_work() as session:
        dormant.last_active_at = clock.now() - timedelta(days=90)
        await session.merge(dormant)
    first = await run_tick(runtime)
    assert first.dispatched == {"acme/crm": 7}
    assert len(queue.sent_ids("audience-sync")) == 7
    run = await _run(runtime, tenant.id)
    assert (run.last_dispatched_at, run.last_dispatch_count, run.last_trigger) == (clock.now(), 7, "scheduled")
    clock.advance(hours=5, minutes=55)
    assert (await run_tick(runtime)).dispatched == {}
    clock.advance(minutes=5)
    assert (await run_tick(runtime)).dispatched == {"acme/crm": 7}


async def test_a_second_tick_in_the_same_window_does_nothing(runtime: Runtime, clock: FrozenClock) -> None:
    runtime.providers.register(FakeSyncProvider("crm", refresh=timedelta(minutes=1)))
    await make_tenant(runtime)
    assert (await run_tick(runtime)).ran
    clock.advance(minutes=2)
    assert not (await run_tick(runtime)).ran


async def test_two_schedulers_at_once_dispatch_each_provider_once(
    settings: Settings, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    runtimes = [assemble(settings, clock=clock, queue=queue)[0] for _ in range(2)]
    try:
        for runtime in runtimes:
            runtime.providers.register(_active_within(30))
            runtime.providers.register(FakeSyncProvider("other", members_query=_everyone))
        tenant = await make_tenant(runtimes[0])
        await make_members(runtimes[0], tenant, 50, last_active_at=clock.now())
        reports = await asyncio.gather(*(run_tick(runtime) for runtime in runtimes))
        assert sorted(report.ran for report in reports) == [False, True]
        async with runtimes[0].database.read_sessions() as session:
            jobs = (await session.scalars(select(Job.target).where(Job.name == "member.sync"))).all()
        assert sorted({job or "" for job in jobs}) == ["crm", "other"]
        assert len(jobs) == 100
        assert len(queue.sent_ids()) == 100
    finally:
        for runtime in runtimes:
            await runtime.aclose()


async def test_two_dispatchers_racing_on_one_provider_dispatch_once(
    settings: Settings, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    runtimes = [assemble(settings, clock=clock, queue=queue)[0] for _ in range(4)]
    try:
        for runtime in runtimes:
            runtime.providers.register(FakeSyncProvider("crm", members_query=_everyone))
        tenant = await make_tenant(runtimes[0])
        await make_members(runtimes[0], tenant, 10)
        counts = await asyncio.gather(
            *(
                dispatch_provider(r, tenant, r.providers.get("crm"), trigger="scheduled", only_if_due=True)
                for r in runtimes
            )
        )
        assert sorted(count or 0 for count in counts) == [0, 0, 0, 10]
    finally:
        for runtime in runtimes:
            await runtime.aclose()


async def test_manual_sync_writes_the_same_row_and_suppresses_the_tick(
    runtime: Runtime, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    provider = runtime.providers.register(FakeSyncProvider("crm", members_query=_everyone))
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 3)
    assert await sync_now(runtime, tenant, [provider], force=True) == {"crm": 3}
    run = await _run(runtime, tenant.id)
    assert (run.last_trigger, run.last_dispatched_at) == ("manual", clock.now())
    assert (await run_tick(runtime)).dispatched == {}
    async with runtime.database.read_sessions() as session:
        params = (await session.scalars(select(Job.params).where(Job.name == "member.sync"))).all()
    assert all(p == {"kind": "manual", "force": True} for p in params)


async def test_gated_provider_is_skipped_silently(runtime: Runtime, queue: InMemoryQueue) -> None:
    runtime.providers.register(FakeSyncProvider("crm", available_for_tenant=False, members_query=_everyone))
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 3)
    assert (await run_tick(runtime)).dispatched == {}
    assert queue.sent == []
