"""Races shared by the tests of each lock backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from membersync.freshness.service import SyncOutcome, ensure_fresh_for_login
from membersync.freshness.tasks import MEMBER_SYNC
from membersync.jobs import ledger
from membersync.jobs.ledger import JobItem
from membersync.models import Member
from membersync.provider.context import SyncContext
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from tests.factories import make_member, make_tenant


async def race_login_and_worker(runtime: Runtime) -> None:
    """A worker and the login path start syncing one member at once: one sync, never two in flight."""
    provider = FakeSyncProvider("crm", login_age=timedelta(minutes=30))
    release = asyncio.Event()

    async def slow(member: Member, ctx: SyncContext) -> None:
        await asyncio.wait_for(release.wait(), timeout=5)

    provider.on_sync = slow
    runtime.providers.register(provider)
    tenant = await make_tenant(runtime)
    member = await make_member(runtime, tenant)
    async with runtime.unit_of_work() as session:
        await ledger.enqueue(session, MEMBER_SYNC, [JobItem(tenant.id, member.id, "crm")], runtime.clock.now())
    worker = asyncio.create_task(runtime.runner().run_until_idle())
    login = asyncio.create_task(ensure_fresh_for_login(runtime, tenant, member))
    await asyncio.sleep(0.3)
    release.set()
    report, outcome = await asyncio.gather(worker, login)
    assert (provider.max_in_flight, provider.sync_call_count) == (1, 1)
    assert report.succeeded == 1
    assert outcome["crm"] in (SyncOutcome.SYNCED, SyncOutcome.FRESH)
