"""The global limit: 200 batches from three overlapping runs, run by four workers on an injected clock,
never put more than 50 requests in any hour, and spend the budget as soon as it frees."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from membersync.clock import FrozenClock
from membersync.models import Job, JobStatus, PushBatch
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestination as Emulator
from tests.factories import make_members, make_tenant

HOUR = timedelta(hours=1)


async def _overlapping_runs(runtime: Runtime) -> None:
    """Three tenants' runs, planned as if three machines read the destination's queue at the same moment:
    every batch due now, so the limiter alone keeps the limit."""
    destination = runtime.destinations.get("subscribers")
    destination.batch_size = 1
    for slug, count in (("one", 67), ("two", 67), ("three", 66)):
        tenant = await make_tenant(runtime, slug)
        await make_members(runtime, tenant, count)
        async with runtime.unit_of_work() as session:
            await start_push(session, destination, tenant.id, runtime.clock.now())
    async with runtime.unit_of_work() as session:
        now = runtime.clock.now()
        await session.execute(update(PushBatch).values(scheduled_at=now))
        await session.execute(update(Job).where(Job.name == "push.send_batch").values(run_at=now))


async def _run_with_four_workers(runtime: Runtime, clock: FrozenClock) -> int:
    runners = [runtime.runner() for _ in range(4)]
    wakeups = 0
    while True:
        await asyncio.gather(*(runner.run_due(limit=25) for runner in runners))
        async with runtime.database.read_sessions() as session:
            due = await session.scalar(select(func.min(Job.run_at)).where(Job.status == JobStatus.QUEUED))
        if due is None:
            return wakeups
        wakeups += 1
        clock.set(max(due, clock.now()))


def _most_in_any_hour(times: list[datetime]) -> int:
    ordered = sorted(times)
    return max(bisect_left(ordered, start + HOUR) - index for index, start in enumerate(ordered))


async def test_200_batches_from_three_runs_keep_50_an_hour_and_lose_no_time(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    start = clock.now()
    await _overlapping_runs(pushing)
    await _run_with_four_workers(pushing, clock)
    sent = [push.at for push in emulator.stats().received]
    assert len(sent) == 200
    assert _most_in_any_hour(sent) == 50
    # No idle hour: each hour from the first request holds a full budget until the batches run out.
    ordered = sorted(sent)
    assert ordered[0] == start
    for hour in range(4):
        begin = start + hour * HOUR
        assert sum(begin <= moment < begin + HOUR for moment in ordered) == 50
    async with pushing.database.read_sessions() as session:
        attempts = await session.scalar(select(func.max(Job.attempts)).where(Job.name == "push.send_batch"))
    assert attempts == 1  # waiting for budget spends no attempt
