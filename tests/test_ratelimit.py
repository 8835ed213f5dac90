"""The shared rate limiter on its two stores: a SQLite file (every worker on one machine) and Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from membersync.ratelimit import (
    LEAK_EVERY,
    RateLimit,
    RateLimiter,
    RedisRateLimiter,
    SqliteRateLimiter,
    storage_name,
)

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
HOURLY = RateLimit(50, timedelta(hours=1))
Factory = Callable[[], RateLimiter]


@pytest.fixture(params=["sqlite", "redis"])
async def limiters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Makes limiters sharing one store, as separate workers would."""
    made: list[RateLimiter] = []
    if request.param == "sqlite":

        def factory() -> RateLimiter:
            made.append(SqliteRateLimiter(tmp_path / "ratelimit.db"))
            return made[-1]

        yield factory
    else:
        redis_url = request.getfixturevalue("redis_url")
        redis = Redis.from_url(redis_url)
        namespace = f"test-{uuid.uuid4().hex[:8]}"

        def factory() -> RateLimiter:
            made.append(RedisRateLimiter(redis, namespace))
            return made[-1]

        yield factory
        keys = [key async for key in redis.scan_iter(f"membersync:{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    for limiter in made:
        await limiter.aclose()


def test_a_rate_limit_is_checked_and_spreads_its_budget() -> None:
    assert HOURLY.spacing == timedelta(seconds=72)
    with pytest.raises(ValueError, match="at least 1"):
        RateLimit(0, timedelta(hours=1))
    with pytest.raises(ValueError, match="1 ms"):
        RateLimit(1, timedelta(0))


async def test_the_budget_runs_out_and_frees_an_hour_after_each_use(limiters: Factory) -> None:
    limiter = limiters()
    for second in range(50):
        assert (await limiter.acquire("dest", HOURLY, T0 + timedelta(seconds=second))).allowed
    denied = await limiter.acquire("dest", HOURLY, T0 + timedelta(minutes=30))
    assert not denied.allowed
    assert denied.retry_at is not None
    assert T0 + timedelta(hours=1) <= denied.retry_at <= T0 + timedelta(hours=1, milliseconds=2)
    assert (await limiter.acquire("dest", HOURLY, denied.retry_at)).allowed
    assert not (await limiter.acquire("dest", HOURLY, denied.retry_at)).allowed
    assert (await limiter.acquire("other", HOURLY, T0 + timedelta(minutes=30))).allowed


async def test_workers_sharing_a_store_never_exceed_the_budget(limiters: Factory) -> None:
    workers = [limiters() for _ in range(4)]
    # Clocks agree across workers (Redis compares the stamps the workers bring): all at once, then later.
    moments = [T0] * 100 + [T0 + timedelta(seconds=second) for second in range(100)]

    async def attempt(index: int) -> bool:
        return (await workers[index % 4].acquire("dest", HOURLY, moments[index])).allowed

    allowed = await asyncio.gather(*(attempt(index) for index in range(200)))
    assert sum(allowed) == 50


async def test_keys_of_any_text_are_safe(limiters: Factory) -> None:
    limiter = limiters()
    for key in ["'; DROP TABLE jobs; --", "clé ünïcode", "x" * 1000, "a\x00b"]:
        assert (await limiter.acquire(key, RateLimit(1, timedelta(seconds=1)), T0)).allowed
        assert not (await limiter.acquire(key, RateLimit(1, timedelta(seconds=1)), T0)).allowed


async def test_entries_out_of_the_window_are_deleted_every_so_often(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.db"
    limiter = SqliteRateLimiter(path)
    per_second = RateLimit(1, timedelta(seconds=1))
    for index in range(3 * LEAK_EVERY):
        admission = await limiter.acquire("push:leaky", per_second, T0 + timedelta(seconds=2 * index))
        assert admission.allowed
    await limiter.aclose()
    with sqlite3.connect(path) as connection:
        (kept,) = connection.execute(f"SELECT count(*) FROM {storage_name('push:leaky')}").fetchone()
    assert kept <= LEAK_EVERY
