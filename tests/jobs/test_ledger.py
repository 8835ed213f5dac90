"""The job ledger on SQLite and PostgreSQL: de-duplication, retries, failures, recovery."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from membersync.clock import FrozenClock
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.jobs import ledger, outbox
from membersync.jobs.ledger import JobItem
from membersync.jobs.queue import InMemoryQueue
from membersync.jobs.runner import sweep
from membersync.models import Entitlement, Job, JobStatus, Member
from membersync.provider.context import SyncContext
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from tests.factories import fail_twice_then_succeed, make_member, make_tenant


async def _dispatch_one(runtime: Runtime, tenant_id: int, member_id: int) -> list[int]:
    async with runtime.unit_of_work() as session:
        item = JobItem(tenant_id=tenant_id, entity_id=member_id, target="fake")
        ids = await ledger.enqueue(session, MEMBER_SYNC, [item], runtime.clock.now())
        outbox.defer(session, MEMBER_SYNC.queue, ids)
        return ids


async def _jobs(runtime: Runtime) -> list[Job]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(Job).where(Job.name == "member.sync").order_by(Job.id))).all())


async def test_twenty_concurrent_dispatches_make_one_job(runtime: Runtime, queue: InMemoryQueue) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    results = await asyncio.gather(*(_dispatch_one(runtime, tenant.id, member.id) for _ in range(20)))
    assert sum(len(ids) for ids in results) == 1
    assert len(await _jobs(runtime)) == 1
    assert len(queue.sent_ids()) == 1


async def test_dispatch_after_the_window_adds_a_job(runtime: Runtime, clock: FrozenClock) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    assert await _dispatch_one(runtime, tenant.id, member.id)
    clock.advance(seconds=599)
    assert not await _dispatch_one(runtime, tenant.id, member.id)
    clock.advance(seconds=1)
    assert await _dispatch_one(runtime, tenant.id, member.id)
    assert len(await _jobs(runtime)) == 2


async def test_a_finished_job_releases_its_key(runtime: Runtime) -> None:
    runtime.providers.register(FakeSyncProvider("fake"))
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    await _dispatch_one(runtime, tenant.id, member.id)
    assert (await runtime.runner().run_until_idle()).succeeded == 1
    assert await _dispatch_one(runtime, tenant.id, member.id)


async def test_flaky_provider_succeeds_on_attempt_three(runtime: Runtime, clock: FrozenClock) -> None:
    provider = FakeSyncProvider("fake")
    failures = iter([RuntimeError("upstream 503"), RuntimeError("upstream 503")])

    def flaky(member: object, ctx: object) -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    provider.on_sync = flaky
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    await _dispatch_one(runtime, tenant.id, member.id)
    runner = runtime.runner()
    await fail_twice_then_succeed(runner, clock)
    [job] = await _jobs(runtime)
    assert (job.status, job.attempts, job.last_error) == (JobStatus.SUCCEEDED, 3, None)
    assert provider.sync_call_count == 3


async def test_always_failing_provider_fails_after_three_tries_and_retry_failed_reruns_it(
    runtime: Runtime, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    provider = FakeSyncProvider("fake")

    def broken(member: object, ctx: object) -> None:
        raise RuntimeError("CRM is down")

    provider.on_sync = broken
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    other = await make_member(runtime, tenant, "other@example.org")
    await _dispatch_one(runtime, tenant.id, member.id)
    runner = runtime.runner()
    for _ in range(3):
        await runner.run_until_idle()
        clock.advance(seconds=60)
    [job] = await _jobs(runtime)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert job.last_error == "ProviderSyncError: provider 'fake' failed: RuntimeError: CRM is down"
    async with runtime.database.read_sessions() as session:
        assert [failed.id for failed in await ledger.list_jobs(session, JobStatus.FAILED)] == [job.id]
    provider.on_sync = None
    queue.clear()
    async with runtime.unit_of_work() as session:
        requeued = await ledger.retry_failed(session, clock.now())
    assert requeued == {MEMBER_SYNC.queue: [job.id]}
    assert (await runner.run_batch([job.id])).succeeded == 1
    assert provider.sync_call_count == 4
    assert await _dispatch_one(runtime, tenant.id, other.id)


async def test_sweeper_requeues_a_job_whose_lease_ran_out(
    runtime: Runtime, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    runtime.providers.register(FakeSyncProvider("fake"))
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    [job_id] = await _dispatch_one(runtime, tenant.id, member.id)
    async with runtime.unit_of_work() as session:
        assert await ledger.claim(session, [job_id], clock.now(), timedelta(seconds=300))
    runner = runtime.runner()
    assert await sweep(runner, timedelta(seconds=300)) == 0
    clock.advance(seconds=301)
    queue.clear()
    assert await sweep(runner, timedelta(seconds=300)) == 1
    assert queue.sent_ids() == [job_id]
    assert (await runner.run_batch([job_id])).succeeded == 1


async def test_sweeper_resends_rows_whose_message_was_lost(
    runtime: Runtime, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    [job_id] = await _dispatch_one(runtime, tenant.id, member.id)
    queue.clear()
    clock.advance(seconds=301)
    assert await sweep(runtime.runner(), timedelta(seconds=300)) == 1
    assert queue.sent_ids() == [job_id]


async def test_rollback_drops_the_messages(runtime: Runtime, queue: InMemoryQueue) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    try:
        async with runtime.unit_of_work() as session:
            ids = await ledger.enqueue(
                session, MEMBER_SYNC, [JobItem(tenant.id, member.id, "fake")], runtime.clock.now()
            )
            outbox.defer(session, MEMBER_SYNC.queue, ids)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert queue.sent == []
    assert await _jobs(runtime) == []


async def test_a_job_for_an_unknown_provider_fails_without_retrying(runtime: Runtime) -> None:
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    await _dispatch_one(runtime, tenant.id, member.id)
    report = await runtime.runner().run_until_idle()
    assert (report.failed, report.retried) == (1, 0)
    [job] = await _jobs(runtime)
    assert "unknown sync provider 'fake'" in (job.last_error or "")


async def test_a_failing_provider_leaves_other_members_and_providers_alone(runtime: Runtime) -> None:
    broken, healthy = FakeSyncProvider("broken"), FakeSyncProvider("healthy")

    async def fail_for_ada(member: Member, ctx: SyncContext) -> None:
        if member.email == "ada@example.org":
            raise RuntimeError("bad record")
        await ctx.grant(member, "ok")

    broken.on_sync = fail_for_ada
    for provider in (broken, healthy):
        runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    ada = await make_member(runtime, tenant)
    bob = await make_member(runtime, tenant, "bob@example.org")
    items = [JobItem(tenant.id, member.id, name) for member in (ada, bob) for name in ("broken", "healthy")]
    async with runtime.unit_of_work() as session:
        await ledger.enqueue(session, MEMBER_SYNC, items, runtime.clock.now())
    report = await runtime.runner().run_until_idle()
    assert (report.claimed, report.succeeded, report.retried) == (4, 3, 1)
    async with runtime.database.read_sessions() as session:
        statuses = dict((await session.execute(select(Job.target, Job.status).where(Job.entity_id == ada.id))).all())
        granted = (await session.scalars(select(Entitlement.member_id))).all()
    assert statuses == {"broken": JobStatus.QUEUED, "healthy": JobStatus.SUCCEEDED}
    assert list(granted) == [bob.id]


async def test_sweeper_prunes_old_succeeded_jobs_but_keeps_failed_ones(runtime: Runtime, clock: FrozenClock) -> None:
    provider = FakeSyncProvider("fake")
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    done = await make_member(runtime, tenant)
    await _dispatch_one(runtime, tenant.id, done.id)
    await runtime.runner().run_until_idle()
    async with runtime.unit_of_work() as session:
        [failed_id] = await ledger.enqueue(session, MEMBER_SYNC, [JobItem(tenant.id, 999_999, "fake")], clock.now())
    await runtime.runner().run_until_idle()
    clock.advance(days=6)
    assert await sweep(runtime.runner(), timedelta(seconds=300), retention=timedelta(days=7)) == 0
    assert len(await _jobs(runtime)) == 2
    clock.advance(days=2)
    await sweep(runtime.runner(), timedelta(seconds=300), retention=timedelta(days=7))
    assert [(job.id, job.status) for job in await _jobs(runtime)] == [(failed_id, JobStatus.FAILED)]


async def test_concurrent_claims_take_each_due_row_once_oldest_first(runtime: Runtime, clock: FrozenClock) -> None:
    tenant = await make_tenant(runtime)
    members = [await make_member(runtime, tenant, email=f"m{i}@example.org") for i in range(12)]
    now = clock.now()
    later = JobItem(tenant_id=tenant.id, entity_id=members[0].id, target="later", run_at=now + timedelta(minutes=5))
    items = [JobItem(tenant_id=tenant.id, entity_id=member.id, target="fake") for member in members[1:]]
    async with runtime.unit_of_work() as session:
        [not_due] = await ledger.enqueue(session, MEMBER_SYNC, [later], now)
        due = await ledger.enqueue(session, MEMBER_SYNC, items, now)

    async def claim_three() -> list[int]:
        async with runtime.unit_of_work() as session:
            return [job.id for job in await ledger.claim_due(session, clock.now(), timedelta(seconds=300), 3)]

    claimed = await asyncio.gather(*(claim_three() for _ in range(5)))
    taken = [job_id for ids in claimed for job_id in ids]
    assert sorted(taken) == sorted(due)
    assert all(len(ids) <= 3 for ids in claimed)
    assert not_due not in taken
    jobs = {job.id: job for job in await _jobs(runtime)}
    assert {jobs[job_id].attempts for job_id in due} == {1}
    assert jobs[not_due].status == JobStatus.QUEUED
