"""One lock interface, two backends: a lease row in the database, or Redis `SET NX PX`.

The login path and the worker take the same key, so a member is never synced with one provider twice
at once. Acquiring waits up to a bound and then gives up, so neither path can block the other for long.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import delete

from membersync.clock import Clock
from membersync.db.engine import Database
from membersync.db.upsert import insert_or_update
from membersync.models import Lock

POLL_INTERVAL_SECONDS = 0.02


class Locks(Protocol):
    def hold(self, key: str, *, wait: float, ttl: float) -> AbstractAsyncContextManager[bool]:
        """An async context manager yielding True when the lock was taken within `wait` seconds."""
        ...

    async def acquire_many(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        """Take every free key at once, without waiting; returns the keys taken."""
        ...

    async def release_many(self, keys: Sequence[str], owner: str) -> None: ...


def sync_lock_key(tenant_id: int, member_id: int, provider: str) -> str:
    return f"sync:{tenant_id}:{member_id}:{provider}"


class DatabaseLocks:
    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    async def acquire_many(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        if not keys:
            return set()
        now = self._clock.now()
        expires_at = now + timedelta(seconds=ttl)
        rows = [{"key": key, "owner": owner, "expires_at": expires_at} for key in keys]
        # The conflict branch only takes over an expired lease: a live one stays with its holder.
        statement = (
            insert_or_update(
                self._database.dialect, Lock, ["key"], {}, ["owner", "expires_at"], where=Lock.expires_at < now
            )
            .values(rows)
            .returning(Lock.key)
        )
        async with self._database.sessions() as session:
            taken = set((await session.scalars(statement)).all())
            await session.commit()
        return taken

    async def release_many(self, keys: Sequence[str], owner: str) -> None:
        if not keys:
            return
        async with self._database.sessions() as session:
            await session.execute(delete(Lock).where(Lock.key.in_(keys), Lock.owner == owner))
            await session.commit()

    async def try_acquire(self, key: str, owner: str, ttl: float) -> bool:
        return key in await self.acquire_many([key], owner, ttl)

    async def release(self, key: str, owner: str) -> None:
        await self.release_many([key], owner)

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, ttl: float) -> AsyncIterator[bool]:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        taken = await self.try_acquire(key, owner, ttl)
        while not taken and time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
            taken = await self.try_acquire(key, owner, ttl)
        try:
            yield taken
        finally:
            if taken:
                await self.release(key, owner)


RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _redis_key(key: str) -> str:
    return f"membersync:lock:{key}"


class RedisLocks:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._release = redis.register_script(RELEASE_IF_OWNER)

    async def acquire_many(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(_redis_key(key), owner, nx=True, px=int(ttl * 1000))
            results = await pipe.execute()
        return {key for key, taken in zip(keys, results, strict=True) if taken}

    async def release_many(self, keys: Sequence[str], owner: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                await self._release(keys=[_redis_key(key)], args=[owner], client=pipe)
            await pipe.execute()

    @asynccontextmanager
    async def hold(self, key: str, *, wait: float, ttl: float) -> AsyncIterator[bool]:
        lock = self._redis.lock(_redis_key(key), timeout=ttl, blocking_timeout=wait, sleep=POLL_INTERVAL_SECONDS)
        taken = bool(await lock.acquire())
        try:
            yield taken
        finally:
            if taken:
                await lock.release()
