"""A handler's deferred writes land with its job's success, or not at all: a finaliser that fails leaves no
partial write, sends no message, and spares the other jobs of its batch. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.jobs import ledger, outbox
from membersync.jobs.ledger import ClaimedJob, JobItem
from membersync.jobs.queue import InMemoryQueue
from membersync.jobs.spec import Finalizer, JobSpec, RetryStrategy
from membersync.models import Job, JobStatus, Tenant
from membersync.runtime import Runtime
from membersync.tenant.service import create_tenant

SPEC = JobSpec(name="test.writer", queue="writer", retry=RetryStrategy(max_attempts=3, delay=timedelta(seconds=60)))
FAILING = "fail"


def _install(runtime: Runtime) -> None:
    """Each job's finaliser creates the tenant named by its target and asks for a message; target "fail" also
    raises after those writes."""

    async def handler(job: ClaimedJob) -> Finalizer | None:
        async def finalize(session: AsyncSession, now: datetime) -> None:
            await create_tenant(session, f"made-by-{job.id}", None, now)
            outbox.defer(session, "follow-up", [job.id])
            if job.target == FAILING:
                raise RuntimeError("the finaliser broke after writing")

        return finalize

    runtime.jobs.add(SPEC, handler)


async def _enqueue(runtime: Runtime, *targets: str) -> list[int]:
    async with runtime.unit_of_work() as session:
        items = [JobItem(target=target) for target in targets]
        return await ledger.enqueue(session, SPEC, items, runtime.clock.now())


async def _state(runtime: Runtime) -> tuple[dict[int, tuple[str, int]], set[str]]:
    async with runtime.database.read_sessions() as session:
        jobs = (await session.execute(select(Job.id, Job.status, Job.attempts).where(Job.name == SPEC.name))).all()
        slugs = set((await session.scalars(select(Tenant.slug))).all())
    return {job_id: (status, attempts) for job_id, status, attempts in jobs}, slugs


async def test_a_lone_finaliser_that_fails_leaves_nothing_and_its_job_retries(
    runtime: Runtime, queue: InMemoryQueue
) -> None:
    _install(runtime)
    [job_id] = await _enqueue(runtime, FAILING)
    queue.clear()
    report = await runtime.runner().run_batch([job_id])
    assert (report.claimed, report.succeeded, report.retried) == (1, 0, 1)
    jobs, slugs = await _state(runtime)
    assert jobs == {job_id: (JobStatus.QUEUED, 1)}
    assert slugs == set()
    assert [sent[0] for sent in queue.sent] == [SPEC.queue]  # the retry, not the failed finaliser's message


async def test_a_lone_finaliser_that_succeeds_commits_with_its_job(runtime: Runtime, queue: InMemoryQueue) -> None:
    _install(runtime)
    [job_id] = await _enqueue(runtime, "ok")
    queue.clear()
    assert (await runtime.runner().run_batch([job_id])).succeeded == 1
    jobs, slugs = await _state(runtime)
    assert jobs == {job_id: (JobStatus.SUCCEEDED, 1)}
    assert slugs == {f"made-by-{job_id}"}
    assert [sent[0] for sent in queue.sent] == ["follow-up"]


async def test_a_failing_finaliser_spares_the_others_in_its_batch(runtime: Runtime, queue: InMemoryQueue) -> None:
    _install(runtime)
    first, failing, last = await _enqueue(runtime, "ok", FAILING, "ok")
    queue.clear()
    report = await runtime.runner().run_batch([first, failing, last])
    assert (report.claimed, report.succeeded, report.retried) == (3, 2, 1)
    jobs, slugs = await _state(runtime)
    assert jobs[failing] == (JobStatus.QUEUED, 1)
    assert jobs[first] == jobs[last] == (JobStatus.SUCCEEDED, 1)
    assert slugs == {f"made-by-{first}", f"made-by-{last}"}
    assert sorted(queue.sent_ids("follow-up")) == [first, last]
