"""A rate limit shared by every worker: at most `limit` acquisitions of a key in any sliding `period`.

The algorithm and its storage are PyrateLimiter's (a sliding-window log): a SQLite file next to the job
queue's when the queue is SqliteHuey (every worker runs on this machine; a file lock serialises them), Redis
when the queue is Redis (workers on any number of machines; an atomic Lua script). Time is ours: each
acquisition is stamped with the runtime's clock, so tests and simulations run on an injected one.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pyrate_limiter import AbstractBucket, Rate, RateItem, RedisBucket, SQLiteBucket
from redis.asyncio import Redis


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` acquisitions in any window of `period`."""

    limit: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a rate limit allows at least 1 per period")
        if self.period.total_seconds() < 0.001:
            raise ValueError("a rate limit's period is at least 1 ms")

    @property
    def spacing(self) -> timedelta:
        """The gap between acquisitions that spreads the budget evenly over the period."""
        return self.period / self.limit

    def as_rate(self) -> Rate:
        return Rate(self.limit, int(self.period.total_seconds() * 1000))


@dataclass(frozen=True)
class Admission:
    """Whether an acquisition was allowed, and if not, when the budget next frees a slot."""

    allowed: bool
    retry_at: datetime | None = None


class RateLimiter(Protocol):
    async def acquire(self, key: str, limit: RateLimit, now: datetime) -> Admission:
        """Take one unit of `key`'s budget at `now`, or say when one frees up."""
        ...

    async def aclose(self) -> None: ...


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _admission(bucket: AbstractBucket, decision: Any, item: RateItem, limit: RateLimit, now: datetime) -> Admission:
    if decision.allowed:
        return Admission(True)
    wait_ms = decision.retry_after_ms
    if wait_ms is None or wait_ms < 0:
        # The library could not say (a contended lock): the whole period is the safe upper bound.
        return Admission(False, now + limit.period)
    # Rounded up to the next millisecond: a slot frees only once the oldest entry is out of the window.
    return Admission(False, now + timedelta(milliseconds=wait_ms + 1))


# Entries older than the window do not count (the count is over the window), they only take room: they are
# deleted every so many acquisitions rather than on each, which would cost a second write and commit.
LEAK_EVERY = 64


class _Buckets:
    """One bucket per (key, limit), each used by one acquisition at a time in this process: a bucket
    remembers its last verdict, so two interleaved acquisitions could read each other's."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, RateLimit], AbstractBucket] = {}
        self._locks: dict[tuple[str, RateLimit], asyncio.Lock] = {}
        self._acquisitions: dict[tuple[str, RateLimit], int] = {}

    def leak_due(self, key: str, limit: RateLimit) -> bool:
        """Whether this acquisition should also delete the entries out of the window (the first of every
        `LEAK_EVERY`)."""
        count = self._acquisitions.get((key, limit), 0)
        self._acquisitions[(key, limit)] = count + 1
        return count % LEAK_EVERY == 0

    def lock(self, key: str, limit: RateLimit) -> asyncio.Lock:
        return self._locks.setdefault((key, limit), asyncio.Lock())

    def get(self, key: str, limit: RateLimit) -> AbstractBucket | None:
        return self._buckets.get((key, limit))

    def put(self, key: str, limit: RateLimit, bucket: AbstractBucket) -> AbstractBucket:
        return self._buckets.setdefault((key, limit), bucket)

    def all(self) -> list[AbstractBucket]:
        return list(self._buckets.values())


def storage_name(key: str) -> str:
    """A table or key name for `key` that is safe in SQL whatever the key holds."""
    return "rate_" + hashlib.sha256(key.encode()).hexdigest()[:24]


class SqliteRateLimiter:
    """Budgets in a SQLite file shared by every process on this machine."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._buckets = _Buckets()

    async def acquire(self, key: str, limit: RateLimit, now: datetime) -> Admission:
        async with self._buckets.lock(key, limit):
            return await asyncio.to_thread(self._acquire, key, limit, now)

    def _acquire(self, key: str, limit: RateLimit, now: datetime) -> Admission:
        bucket = self._bucket(key, limit)
        item = RateItem(key, _millis(now))
        if self._buckets.leak_due(key, limit):
            bucket.leak(item.timestamp)
        return _admission(bucket, bucket.put_decision(item), item, limit, now)

    def _bucket(self, key: str, limit: RateLimit) -> AbstractBucket:
        bucket = self._buckets.get(key, limit)
        if bucket is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            created = SQLiteBucket.init_from_file(
                [limit.as_rate()], table=storage_name(key), db_path=str(self._path), use_file_lock=True
            )
            bucket = self._buckets.put(key, limit, created)
        return bucket

    async def aclose(self) -> None:
        for bucket in self._buckets.all():
            bucket.close()


class RedisRateLimiter:
    """Budgets in Redis, shared by workers on any number of machines."""

    def __init__(self, redis: Redis, namespace: str = "") -> None:
        self._redis = redis
        self._prefix = f"membersync:{namespace}:" if namespace else "membersync:"
        self._buckets = _Buckets()

    async def acquire(self, key: str, limit: RateLimit, now: datetime) -> Admission:
        async with self._buckets.lock(key, limit):
            bucket = await self._bucket(key, limit)
            item = RateItem(key, _millis(now))
            if self._buckets.leak_due(key, limit):
                await bucket.leak(item.timestamp)
            return _admission(bucket, await bucket.put_decision(item), item, limit, now)

    async def _bucket(self, key: str, limit: RateLimit) -> Any:
        bucket = self._buckets.get(key, limit)
        if bucket is None:
            created = await RedisBucket.init([limit.as_rate()], self._redis, self.redis_key(key))
            bucket = self._buckets.put(key, limit, created)
        return bucket

    def redis_key(self, key: str) -> str:
        return self._prefix + storage_name(key)

    async def aclose(self) -> None:
        """The Redis connection belongs to the runtime, which closes it."""
