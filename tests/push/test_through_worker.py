"""Push through the real worker path. `start_push` records the batches and sends one `push.send_batch` message
each on the queue (SqliteHuey beside SQLite, RedisHuey on Redis beside PostgreSQL); a huey consumer built by
`membersync.worker.Worker`, the class `membersync worker` runs, takes them and sends each batch to the push
destination emulator served on 127.0.0.1.

The consumer is built for the push jobs' own queue (`PUSH_BATCH.queue`, "user-sync"), as
`membersync worker --queue user-sync` builds it (tests/worker/test_push_worker.py runs that command).

Time. The 2,500-member push runs on the wall clock, with a budget large enough that its batches are due a
millisecond apart. The retry test gives the consumer's threads (through `Worker`'s `setup` hook) and itself one
FrozenClock, started at the wall clock's time: the 503 puts the retry 60 s ahead on it, and huey holds the
retry's message until the wall clock gets there. Rather than wait, the test moves the clock past the retry and
the sweeper's `resend_after` (the lease) and runs the sweep the worker runs every minute, which sends the due
job's message again, through the queue, to the same consumer. Nothing waits except polling for the consumer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import pytest
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import select
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from membersync.assembly import assemble
from membersync.clock import Clock, FrozenClock, SystemClock
from membersync.config import Settings
from membersync.jobs.runner import sweep
from membersync.models import JobStatus, Member, Tenant
from membersync.push.service import PushRun, start_push
from membersync.push.tasks import PUSH_BATCH
from membersync.runtime import Runtime
from membersync.sandbox.loopback import LoopbackServer
from membersync.sandbox.push_destination import (
    BATCHES_PATH,
    PushDestination,
    PushDestinationConfig,
    create_push_destination_app,
)
from membersync.worker import Worker
from tests.factories import make_members, make_tenant
from tests.push.rows import push_attempts as _attempts
from tests.push.rows import push_batches as _batches
from tests.push.rows import push_jobs as _jobs
from tests.push.rows import pushed_members

API_KEY = "worker-test-key"
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.05
FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD}


@dataclass(frozen=True)
class Received:
    idempotency_key: str | None
    status: int


@dataclass
class KeyRecorder:
    """ASGI middleware noting each `POST /batches`' Idempotency-Key and status: the emulator itself remembers
    the keys of accepted pushes only."""

    app: ASGIApp
    requests: list[Received] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != BATCHES_PATH:
            await self.app(scope, receive, send)
            return
        key = Headers(scope=scope).get("idempotency-key")

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.requests.append(Received(key, message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


@dataclass(frozen=True)
class Destination:
    emulator: PushDestination
    recorder: KeyRecorder
    url: str


@pytest.fixture
def destination() -> Iterator[Destination]:
    """The push destination emulator, behind a key recorder, served on loopback."""
    emulator = PushDestination(PushDestinationConfig(api_key=API_KEY))
    recorder = KeyRecorder(create_push_destination_app(emulator))
    server = LoopbackServer(recorder, description="push destination emulator", thread_name="push-destination-test")
    url = server.start() + BATCHES_PATH
    yield Destination(emulator, recorder, url)
    server.stop()


@pytest.fixture
def push_settings(
    settings: Settings, database_url: str, destination: Destination, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """The built-in destination aimed at the emulator, with a budget that never holds a batch back; SqliteHuey
    beside SQLite, RedisHuey beside PostgreSQL. Torn down last, it deletes the test's Redis keys."""
    redis_url: str | None = None
    if database_url.startswith("postgresql"):
        redis_url = request.getfixturevalue("redis_url")
    update = {"push_url": destination.url, "push_api_key": SecretStr(API_KEY), "redis_url": redis_url}
    update |= {"push_batches_per_period": 1000, "push_period_seconds": 1.0}
    yield settings.model_copy(update=update)
    if redis_url is not None:
        _delete_keys(redis_url, settings.queue_namespace)


def _delete_keys(redis_url: str, namespace: str) -> None:
    # huey strips the namespace's punctuation from its key names; the rate limiter keeps it.
    patterns = {f"*{namespace}*", f"*{re.sub(r'[^A-Za-z0-9_]', '', namespace)}*"}
    redis = Redis.from_url(redis_url)
    try:
        keys = {key for pattern in patterns for key in redis.scan_iter(pattern)}
        if keys:
            redis.delete(*keys)
    finally:
        redis.close()


@pytest.fixture
async def open_runtime(push_settings: Settings) -> AsyncIterator[Callable[..., Runtime]]:
    """The producer's runtime (as the CLI builds it): its queue sends on the worker's huey queue."""
    opened: list[Runtime] = []

    def open_runtime(clock: Clock | None = None) -> Runtime:
        runtime, _ = assemble(push_settings, clock=clock)
        opened.append(runtime)
        return runtime

    yield open_runtime
    for runtime in opened:
        await runtime.aclose()


@pytest.fixture
def start_worker(push_settings: Settings) -> Iterator[Callable[..., Worker]]:
    """Start an in-process consumer on the push queue; the fixture stops the ones it started."""
    started: list[Worker] = []

    def start(clock: Clock | None = None) -> Worker:
        setup = None if clock is None else partial(_use_clock, clock)
        worker = Worker(push_settings, threads=2, queue=PUSH_BATCH.queue, periodic=False, setup=setup)
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()
        worker.consumer.huey.storage.close()


def _use_clock(clock: Clock, runtime: Runtime) -> None:
    # A push job reads the time from the runtime's clock only (the runner is built from it per batch).
    runtime.clock = clock


async def _wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {DEADLINE_SECONDS} s waiting for {what}"
        await asyncio.sleep(POLL_SECONDS)


async def _push(runtime: Runtime, tenant: Tenant) -> PushRun:
    async with runtime.unit_of_work() as session:
        destination = runtime.destinations.get("subscribers")
        return await start_push(session, destination, tenant.id, runtime.clock.now())


async def _member_emails(runtime: Runtime, tenant: Tenant) -> set[tuple[int, str | None]]:
    async with runtime.database.read_sessions() as session:
        return set((await session.execute(select(Member.id, Member.email).where(Member.tenant_id == tenant.id))).all())


async def _jobs_finished(runtime: Runtime, count: int) -> bool:
    jobs = await _jobs(runtime)
    return len(jobs) == count and all(job.status in FINISHED for job in jobs)


async def _retry_scheduled(runtime: Runtime) -> bool:
    return [(job.status, job.attempts) for job in await _jobs(runtime)] == [(JobStatus.QUEUED, 1)]


async def test_2500_members_go_out_in_3_batches_through_the_worker(
    open_runtime: Callable[..., Runtime], start_worker: Callable[..., Worker], destination: Destination
) -> None:
    runtime = open_runtime()
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 2500)
    start_worker()
    run = await _push(runtime, tenant)
    assert (run.queued, len(run.batch_ids)) == (2500, 3)
    await _wait_until(partial(_jobs_finished, runtime, 3), "the worker to finish the 3 push jobs")
    stats = destination.emulator.stats()
    assert (stats.requests, stats.accepted_requests, stats.accepted_subscribers) == (3, 3, 2500)
    batches = await _batches(runtime)
    assert [(b.status, b.sent_count, b.attempts) for b in batches] == [
        ("succeeded", 1000, 1),
        ("succeeded", 1000, 1),
        ("succeeded", 500, 1),
    ]
    jobs = await _jobs(runtime)
    assert [(job.status, job.attempts) for job in jobs] == [(JobStatus.SUCCEEDED, 1)] * 3
    assert [job.id for job in jobs] == [batch.job_id for batch in batches]
    members = await _member_emails(runtime, tenant)
    assert len(members) == 2500
    assert await pushed_members(runtime) == members


async def test_a_503_is_retried_through_the_worker_with_the_same_idempotency_key(
    open_runtime: Callable[..., Runtime],
    start_worker: Callable[..., Worker],
    destination: Destination,
    push_settings: Settings,
) -> None:
    clock = FrozenClock(SystemClock().now())
    runtime = open_runtime(clock)
    tenant = await make_tenant(runtime)
    await make_members(runtime, tenant, 3)
    destination.emulator.configure(fail_next=1, fail_status=503)
    start_worker(clock)
    await _push(runtime, tenant)
    await _wait_until(partial(_retry_scheduled, runtime), "the worker to schedule the retry")
    [job] = await _jobs(runtime)
    refused_at = clock.now()
    assert job.run_at == refused_at + PUSH_BATCH.retry.delay
    lease = timedelta(seconds=push_settings.job_lease_seconds)
    clock.advance(PUSH_BATCH.retry.delay + lease + timedelta(seconds=1))
    assert await sweep(runtime.runner(), resend_after=lease) == 1
    await _wait_until(partial(_jobs_finished, runtime, 1), "the worker to run the retry")
    [job] = await _jobs(runtime)
    [batch] = await _batches(runtime)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert (batch.status, batch.attempts, batch.sent_count, batch.last_status_code) == ("succeeded", 2, 3, 202)
    attempts = await _attempts(runtime)
    assert [(a.batch_id, a.attempt, a.status_code, a.outcome) for a in attempts] == [
        (batch.id, 1, 503, "retry"),
        (batch.id, 2, 202, "accepted"),
    ]
    assert attempts[0].started_at == refused_at
    assert attempts[1].started_at - attempts[0].started_at > PUSH_BATCH.retry.delay
    assert destination.recorder.requests == [Received(batch.idempotency_key, 503), Received(batch.idempotency_key, 202)]
    stats = destination.emulator.stats()
    assert (stats.requests, stats.failed, stats.accepted_requests, stats.accepted_subscribers) == (2, 1, 1, 3)
    assert await pushed_members(runtime) == await _member_emails(runtime, tenant)
