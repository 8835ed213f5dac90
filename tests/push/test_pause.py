"""A destination's `Retry-After` holds back all of its waiting batches, not only the one refused."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from membersync.clock import FrozenClock
from membersync.models import Job, JobStatus, PushBatch
from membersync.push.service import start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestination as Emulator
from tests.factories import make_members, make_tenant

SLOT = timedelta(seconds=72)


async def _five_batches_the_first_refused(runtime: Runtime, emulator: Emulator, retry_after: int) -> None:
    """Five batches one slot apart; the destination answers the first with 429 and `Retry-After`."""
    await _queue_five_batches(runtime)
    emulator.configure(throttle_next=1, retry_after_seconds=retry_after)
    assert await _run_due(runtime) == 1


async def _queue_five_batches(runtime: Runtime) -> None:
    destination = runtime.destinations.get("subscribers")
    destination.batch_size = 1
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 5)
    async with runtime.unit_of_work() as session:
        await start_push(session, destination, tenant.id, runtime.clock.now())


async def _due_times(runtime: Runtime) -> tuple[list[timedelta], list[timedelta]]:
    start = runtime.clock.now()
    async with runtime.database.read_sessions() as session:
        batches = (await session.scalars(select(PushBatch.scheduled_at).order_by(PushBatch.id))).all()
        jobs = (await session.scalars(select(Job.run_at).order_by(Job.entity_id))).all()
    return [moment - start for moment in batches], [moment - start for moment in jobs]


async def _run_due(runtime: Runtime) -> int:
    return (await runtime.runner().run_until_idle()).claimed


async def test_a_retry_after_holds_back_the_batches_due_before_it(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    await _five_batches_the_first_refused(pushing, emulator, 600)
    pause = timedelta(seconds=600)
    expected = [pause + SLOT * index for index in range(5)]
    assert await _due_times(pushing) == (expected, expected)
    clock.advance(seconds=599)
    assert await _run_due(pushing) == 0
    assert emulator.stats().accepted_batches == 0
    clock.advance(seconds=1)
    assert await _run_due(pushing) == 1
    for _ in range(4):
        clock.advance(SLOT)
        assert await _run_due(pushing) == 1
    assert emulator.stats().accepted_batches == 5
    async with pushing.database.read_sessions() as session:
        attempts = await session.scalar(select(func.sum(Job.attempts)))
        unfinished = await session.scalar(select(func.count()).where(Job.status != JobStatus.SUCCEEDED))
    assert (attempts, unfinished) == (6, 0)  # only the refused batch spent a second try


async def test_batches_due_after_the_pause_keep_their_time(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    await _five_batches_the_first_refused(pushing, emulator, 100)
    batches, jobs = await _due_times(pushing)
    assert batches == [timedelta(seconds=100), timedelta(seconds=172), SLOT * 2, SLOT * 3, SLOT * 4]
    assert jobs == batches
