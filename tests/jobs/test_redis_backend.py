"""The distributed backend on a real Redis: RedisHuey delivery and Redis locks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from membersync.assembly import assemble
from membersync.clock import FrozenClock
from membersync.config import Settings
from membersync.jobs.queue import HueyQueue, build_huey, register_batch_task
from membersync.locks import RedisLocks
from membersync.models import Member
from membersync.runtime import Runtime
from membersync.scheduling.service import sync_now
from membersync.testing import FakeSyncProvider
from tests.factories import make_members, make_tenant
from tests.races import race_login_and_worker


@pytest.fixture
async def redis_locks(redis_url: str) -> AsyncIterator[RedisLocks]:
    client = Redis.from_url(redis_url)
    yield RedisLocks(client)
    await client.aclose()


@pytest.fixture
def redis_settings(settings: Settings, redis_url: str) -> Settings:
    return settings.model_copy(update={"redis_url": redis_url})


@pytest.fixture
async def redis_runtime(redis_settings: Settings, clock: FrozenClock) -> AsyncIterator[Runtime]:
    queue = HueyQueue(redis_settings, batch_size=10)
    runtime, _ = assemble(redis_settings, clock=clock, queue=queue)
    yield runtime
    for name in queue._hueys:
        queue.huey(name).flush()
    await runtime.aclose()


async def test_redis_lock_excludes_a_second_holder_and_waits_bounded(redis_locks: RedisLocks) -> None:
    key = f"test:{uuid.uuid4().hex}"
    async with redis_locks.hold(key, wait=0, ttl=30) as first:
        assert first
        started = asyncio.get_running_loop().time()
        async with redis_locks.hold(key, wait=0.2, ttl=30) as second:
            assert not second
        assert asyncio.get_running_loop().time() - started < 2
    async with redis_locks.hold(key, wait=0, ttl=30) as again:
        assert again


async def test_redis_acquire_many_takes_only_free_keys(redis_locks: RedisLocks) -> None:
    keys = [f"test:{uuid.uuid4().hex}" for _ in range(3)]
    async with redis_locks.hold(keys[0], wait=0, ttl=30):
        taken = await redis_locks.acquire_many(keys, "owner-a", ttl=30)
        assert taken == set(keys[1:])
        assert await redis_locks.acquire_many(keys[1:], "owner-b", ttl=30) == set()
        await redis_locks.release_many(keys[1:], "owner-b")
        assert await redis_locks.acquire_many(keys[1:], "owner-c", ttl=30) == set()
        await redis_locks.release_many(keys[1:], "owner-a")
        assert await redis_locks.acquire_many(keys[1:], "owner-c", ttl=30) == set(keys[1:])
        await redis_locks.release_many(keys[1:], "owner-c")


async def test_dispatch_goes_through_redis_huey_to_the_runner(redis_runtime: Runtime, redis_settings: Settings) -> None:
    provider = FakeSyncProvider("crm", members_query=lambda _tenant: select(Member))
    redis_runtime.providers.register(provider)
    assert isinstance(redis_runtime.locks, RedisLocks)
    tenant = await make_tenant(redis_runtime)
    await make_members(redis_runtime, tenant, 25)
    assert await sync_now(redis_runtime, tenant, [provider], force=False) == {"crm": 25}
    consumer_side = build_huey(redis_settings, "audience-sync")
    batches: list[list[int]] = []
    register_batch_task(consumer_side, batches.append)
    assert consumer_side.pending_count() == 3
    while (task := consumer_side.dequeue()) is not None:
        consumer_side.execute(task)
    assert sorted(len(batch) for batch in batches) == [5, 10, 10]
    reports = [await redis_runtime.runner().run_batch(batch) for batch in batches]
    assert sum(report.succeeded for report in reports) == 25
    assert provider.sync_call_count == 25


async def test_login_and_worker_share_the_redis_lock(redis_runtime: Runtime) -> None:
    await race_login_and_worker(redis_runtime)


def test_sqlite_and_redis_queues_are_chosen_by_settings(tmp_path: Path, redis_url: str) -> None:
    embedded = Settings(_env_file=None, data_dir=tmp_path)
    assert type(build_huey(embedded, "q")).__name__ == "SqliteHuey"
    distributed = embedded.model_copy(update={"redis_url": redis_url})
    assert type(build_huey(distributed, "q")).__name__ == "RedisHuey"
