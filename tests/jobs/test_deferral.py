"""A handler can put its job off without spending an attempt (no budget yet), or name when its next attempt
runs (`Retry-After`). SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from membersync.clock import FrozenClock
from membersync.jobs import ledger, outbox
from membersync.jobs.ledger import ClaimedJob, JobItem
from membersync.jobs.queue import InMemoryQueue
from membersync.jobs.runner import DeferJob, RetryJobAt
from membersync.jobs.spec import Finalizer, JobSpec, RetryStrategy
from membersync.models import Job, JobStatus
from membersync.runtime import Runtime

SPEC = JobSpec(name="test.probe", queue="probe", retry=RetryStrategy(max_attempts=3, delay=timedelta(seconds=60)))


def _install(runtime: Runtime, behaviour: Callable[[ClaimedJob, datetime], None]) -> list[int]:
    calls: list[int] = []

    async def handler(job: ClaimedJob) -> Finalizer | None:
        calls.append(job.attempts)
        behaviour(job, runtime.clock.now())
        return None

    runtime.jobs.add(SPEC, handler)
    return calls


async def _enqueue(runtime: Runtime) -> int:
    async with runtime.unit_of_work() as session:
        [job_id] = await ledger.enqueue(session, SPEC, [JobItem(target="x")], runtime.clock.now())
        outbox.defer(session, SPEC.queue, [job_id])
    return job_id


async def _job(runtime: Runtime, job_id: int) -> Job:
    async with runtime.database.read_sessions() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id))
    assert job is not None
    return job


async def test_a_deferred_job_waits_without_spending_attempts(
    runtime: Runtime, clock: FrozenClock, queue: InMemoryQueue
) -> None:
    deferrals = iter(range(5))

    def no_budget_five_times(job: ClaimedJob, now: datetime) -> None:
        if next(deferrals, None) is not None:
            raise DeferJob("no budget", now + timedelta(seconds=72))

    calls = _install(runtime, no_budget_five_times)
    job_id = await _enqueue(runtime)
    runner = runtime.runner()
    for _ in range(5):
        report = await runner.run_until_idle()
        assert (report.deferred, report.retried, report.failed) == (1, 0, 0)
        job = await _job(runtime, job_id)
        assert (job.status, job.attempts, job.run_at) == (JobStatus.QUEUED, 0, clock.now() + timedelta(seconds=72))
        assert queue.sent[-1][2] == clock.now() + timedelta(seconds=72)
        clock.advance(seconds=71)
        assert (await runner.run_until_idle()).claimed == 0
        clock.advance(seconds=1)
    assert (await runner.run_until_idle()).succeeded == 1
    assert calls == [1, 1, 1, 1, 1, 1]
    assert (await _job(runtime, job_id)).attempts == 1


async def test_retry_after_sets_the_next_attempt_and_counts_it(runtime: Runtime, clock: FrozenClock) -> None:
    def throttled(job: ClaimedJob, now: datetime) -> None:
        raise RetryJobAt("429 Too Many Requests", now + timedelta(seconds=7))

    calls = _install(runtime, throttled)
    job_id = await _enqueue(runtime)
    runner = runtime.runner()
    assert (await runner.run_until_idle()).retried == 1
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts, job.run_at) == (JobStatus.QUEUED, 1, clock.now() + timedelta(seconds=7))
    clock.advance(seconds=7)
    assert (await runner.run_until_idle()).retried == 1
    clock.advance(seconds=7)
    assert (await runner.run_until_idle()).failed == 1
    job = await _job(runtime, job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert job.last_error == "RetryJobAt: 429 Too Many Requests"
    assert calls == [1, 2, 3]
